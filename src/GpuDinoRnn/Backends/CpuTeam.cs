// The cpu backend's threads: the caller plus threads − 1 workers that wait for the next phase.
// A training step has one to six phases, so a phase must start in well under a microsecond: workers
// spin for a while after each phase of theirs and only then block (batch 1 runs inline and never
// waits). A phase wakes and waits for its own members only: a small batch on a many-core
// machine uses two threads, and the other workers, which would otherwise spin through every
// phase, go to sleep, leaving their cores (and a laptop's power) to the two that work.
//
// Another busy program on the cores is the team's worst case: a member that the OS has paused
// holds up the whole phase while the others spin through the time it needs (beside one busy
// process on a 2-core VM, 2 threads ran 5 to 9 times slower than 1). So a phase that kept the
// caller waiting far longer than its own part took sends the team solo for a while: the caller
// runs every member's part itself, one after another (the parts are independent, and the
// backends' results do not depend on which thread runs which). A VM's host also takes a core
// away now and then, for 0.2 to 2 ms several times a second; a solo as long as a busy program
// needs (50 ms) after each of those kept two threads solo a fifth to a third of the time. So a solo
// starts at 1 ms and doubles, up to 50 ms, each time the team is held up again soon after
// it is back.
using System.Diagnostics;

namespace GpuDinoRnn.Backends;

internal sealed class CpuTeam : IDisposable
{
    /// <summary>How long a worker spins after a phase of its before it blocks.</summary>
    public static readonly TimeSpan SpinTime = TimeSpan.FromMilliseconds(0.5);
    private static readonly long SpinTicks = (long)(SpinTime.TotalSeconds * Stopwatch.Frequency);
    private const long MembersPerTicket = 1 << 16;
    // Spinning workers yield the core now and then (about every 20 µs): beside a busy program the
    // thread they wait for may be queued behind them (the default recipe beside one: 0.43–0.45 s
    // against 0.49–0.96 s without).
    private const int SpinsPerYield = 32;
    private static readonly long SlowTicks = Stopwatch.Frequency / 5000;  // 0.2 ms: a wait this long is a paused thread,
    private static readonly long WakeTicks = Stopwatch.Frequency / 200;   // 5 ms where a sleeping one had to be woken
    private static readonly long FirstSoloTicks = Stopwatch.Frequency / 1000; // 1 ms solo, then the team is tried again;
    private static readonly long MaxSoloTicks = Stopwatch.Frequency / 20;     // 50 ms at most
    private const int SoonAfter = 10; // held up again within 10 solos' length: the next solo is twice as long
    private readonly Thread[] _workers;
    private readonly ManualResetEventSlim[] _wake; // (Size) worker m's, set when a phase of its starts while it sleeps
    private readonly int[] _asleep;                // (Size) 1 while worker m blocks on _wake[m]
    private Action<int> _body = _ => { };
    private long _ticket;      // the current phase: its number · MembersPerTicket + its members; published after _body
    private int _running;      // workers still in the current phase
    private volatile bool _stop;
    private long _soloUntil;   // timestamp until which the caller runs every member's part itself
    private long _soloTicks;   // the length of the last solo
    private readonly long _firstSoloTicks, _maxSoloTicks;
    private Exception? _failure; // a worker's, the first of the phase

    /// <param name="solo">How long the team first stays solo after a slow phase (tests ask for longer than the 1 ms default).</param>
    public CpuTeam(int threads, TimeSpan? solo = null)
    {
        _firstSoloTicks = solo is { } t ? (long)(t.TotalSeconds * Stopwatch.Frequency) : FirstSoloTicks;
        _maxSoloTicks = Math.Max(_firstSoloTicks, MaxSoloTicks);
        if (threads >= MembersPerTicket)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, $"at most {MembersPerTicket - 1} threads");
        Size = Math.Max(1, threads);
        _wake = new ManualResetEventSlim[Size];
        _asleep = new int[Size];
        _workers = new Thread[Size - 1];
        for (int w = 0; w < _workers.Length; w++)
        {
            int member = w + 1;
            _wake[member] = new ManualResetEventSlim(false, spinCount: 1);
            _workers[w] = new Thread(() => Work(member)) { IsBackground = true, Name = $"cpu backend {member}" };
            _workers[w].Start();
        }
    }

    public int Size { get; }

    /// <summary>Whether the calling thread runs every member's part itself now.</summary>
    internal bool Solo => Stopwatch.GetTimestamp() < _soloUntil;

    /// <summary>How long the last solo was (for tests).</summary>
    internal TimeSpan SoloLength => TimeSpan.FromSeconds((double)_soloTicks / Stopwatch.Frequency);

    /// <summary>
    /// Runs body(member) for members 0 … members − 1 (0 on the calling thread; members ≤ Size) and
    /// waits for all; while solo, the calling thread runs them all in turn. With several members,
    /// every part runs or fails before this returns, and failures come as one AggregateException.
    /// </summary>
    public void Run(Action<int> body, int members)
    {
        if (members < 1 || members > Size)
            throw new ArgumentOutOfRangeException(nameof(members), members, $"a team of {Size}");
        // The workers are gone: a phase would wait for them for ever.
        ObjectDisposedException.ThrowIf(_stop, this);
        if (members == 1)
        {
            body(0);
            return;
        }
        if (Solo)
        {
            RunAll(body, members);
            return;
        }
        _body = body;
        Volatile.Write(ref _running, members - 1);
        // A full fence: a worker about to sleep either sees this phase or is seen asleep here.
        Interlocked.Exchange(ref _ticket, (_ticket / MembersPerTicket + 1) * MembersPerTicket + members);
        bool woken = false; // waking a sleeping worker takes the OS a while, and that says little of busy cores
        for (int m = 1; m < members; m++)
        {
            if (Volatile.Read(ref _asleep[m]) != 0)
            {
                _wake[m].Set();
                woken = true;
            }
        }
        long start = Stopwatch.GetTimestamp();
        Exception? mine = null;
        try
        {
            body(0);
        }
        catch (Exception e)
        {
            mine = e; // the workers' parts are still running: wait for them before saying so
        }
        long own = Stopwatch.GetTimestamp();
        var spin = new SpinWait();
        while (Volatile.Read(ref _running) > 0)
            spin.SpinOnce(sleep1Threshold: -1);
        long end = Stopwatch.GetTimestamp();
        NoteWait(own - start, end - own, woken ? WakeTicks : SlowTicks, end);
        var theirs = Interlocked.Exchange(ref _failure, null);
        if (mine is not null || theirs is not null)
            throw new AggregateException(new[] { mine, theirs }.OfType<Exception>());
    }

    /// <summary>
    /// For a caller's part that waits for the other members inside itself (a barrier within the
    /// phase), on the caller's thread: it worked for `worked` ticks, then waited `waited`. A long
    /// wait sends the team solo, as one at the end of a phase does.
    /// </summary>
    public void NoteWait(long worked, long waited) => NoteWait(worked, waited, SlowTicks, Stopwatch.GetTimestamp());

    /// <summary>A wait longer than `allowed` and 4 times the caller's own work is a hold-up.</summary>
    private void NoteWait(long worked, long waited, long allowed, long now)
    {
        if (!Solo && waited > Math.Max(allowed, 4 * worked))
            GoSolo(now);
    }

    /// <summary>How many times the team has gone solo (for tests).</summary>
    internal int Solos { get; private set; }

    private void GoSolo(long now)
    {
        _soloTicks = _soloTicks > 0 && now - _soloUntil < SoonAfter * _soloTicks
            ? Math.Min(2 * _soloTicks, _maxSoloTicks)
            : _firstSoloTicks;
        _soloUntil = now + _soloTicks;
        Solos++;
    }

    private static void RunAll(Action<int> body, int members)
    {
        List<Exception>? failures = null;
        for (int m = 0; m < members; m++)
        {
            try
            {
                body(m);
            }
            catch (Exception e)
            {
                (failures ??= []).Add(e);
            }
        }
        if (failures is not null)
            throw new AggregateException(failures);
    }

    /// <summary>Whether worker m is blocked waiting (for tests: workers no phase needs must not spin on).</summary>
    internal bool IsAsleep(int member) => Volatile.Read(ref _asleep[member]) != 0;

    public void Dispose()
    {
        _stop = true;
        Interlocked.Exchange(ref _ticket, (_ticket / MembersPerTicket + 1) * MembersPerTicket + Size);
        for (int m = 1; m < Size; m++)
            _wake[m].Set();
        foreach (var worker in _workers)
            worker.Join();
        for (int m = 1; m < Size; m++)
            _wake[m].Dispose();
    }

    private void Work(int member)
    {
        long done = 0; // the number of the last phase this worker ran
        while (true)
        {
            long ticket = WaitForPhase(member, done);
            if (_stop)
                return;
            done = ticket / MembersPerTicket;
            try
            {
                _body(member);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            Interlocked.Decrement(ref _running);
        }
    }

    /// <summary>
    /// The ticket of the next phase with this member in it. The caller waits for every member of a
    /// phase before it starts the next, so a phase of this worker's is never passed over.
    /// </summary>
    private long WaitForPhase(int member, long done)
    {
        long spinUntil = Stopwatch.GetTimestamp() + SpinTicks;
        for (int spins = 1; ; spins++)
        {
            long ticket = Volatile.Read(ref _ticket);
            if (IsFor(ticket, member, done))
                return ticket;
            if (Stopwatch.GetTimestamp() < spinUntil)
            {
                if (spins % SpinsPerYield == 0)
                    Thread.Yield();
                else
                    Thread.SpinWait(20);
                continue;
            }
            _wake[member].Reset();
            Interlocked.Exchange(ref _asleep[member], 1); // a full fence before the ticket is read again
            if (!IsFor(Volatile.Read(ref _ticket), member, done))
                _wake[member].Wait();
            Volatile.Write(ref _asleep[member], 0);
            spinUntil = Stopwatch.GetTimestamp() + SpinTicks;
        }
    }

    private static bool IsFor(long ticket, int member, long done) =>
        ticket / MembersPerTicket != done && ticket % MembersPerTicket > member;
}
