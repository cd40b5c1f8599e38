// The cpu backend's threads: the caller plus threads − 1 workers that wait for the next phase.
// A training step has four phases, so a phase must start in well under a microsecond: workers
// spin for a while after each phase and only then block (batch 1 runs inline and never waits).
using System.Diagnostics;

namespace GpuDinoRnn.Backends;

internal sealed class CpuTeam : IDisposable
{
    private static readonly long SpinTicks = Stopwatch.Frequency / 2000; // 0.5 ms
    private readonly Thread[] _workers;
    private readonly object _gate = new();
    private Action<int> _body = _ => { };
    private int _members;      // members that run the current phase (the others only wait for the next)
    private int _generation;   // bumped once per phase
    private int _running;      // workers still in the current phase
    private int _sleeping;     // workers blocked on _gate
    private bool _stop;
    private Exception? _failure;

    public CpuTeam(int threads)
    {
        Size = Math.Max(1, threads);
        _workers = new Thread[Size - 1];
        for (int w = 0; w < _workers.Length; w++)
        {
            int member = w + 1;
            _workers[w] = new Thread(() => Work(member)) { IsBackground = true, Name = $"cpu backend {member}" };
            _workers[w].Start();
        }
    }

    public int Size { get; }

    /// <summary>
    /// Runs body(member) for members 0 … members − 1 (0 on the calling thread; members ≤ Size) and
    /// waits for all.
    /// </summary>
    public void Run(Action<int> body, int members)
    {
        if (members < 1 || members > Size)
            throw new ArgumentOutOfRangeException(nameof(members), members, $"a team of {Size}");
        if (members == 1)
        {
            body(0);
            return;
        }
        _body = body;
        _members = members;
        Volatile.Write(ref _running, Size - 1);
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _sleeping) > 0)
            lock (_gate)
                Monitor.PulseAll(_gate);
        body(0);
        var spin = new SpinWait();
        while (Volatile.Read(ref _running) > 0)
            spin.SpinOnce(sleep1Threshold: -1);
        if (_failure is { } failure)
        {
            _failure = null;
            throw new AggregateException(failure);
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _stop, true);
        Interlocked.Increment(ref _generation);
        lock (_gate)
            Monitor.PulseAll(_gate);
        foreach (var worker in _workers)
            worker.Join();
    }

    private void Work(int member)
    {
        int seen = 0;
        while (true)
        {
            long spinUntil = Stopwatch.GetTimestamp() + SpinTicks;
            while (Volatile.Read(ref _generation) == seen && Stopwatch.GetTimestamp() < spinUntil)
                Thread.SpinWait(20);
            if (Volatile.Read(ref _generation) == seen)
            {
                lock (_gate)
                {
                    Interlocked.Increment(ref _sleeping);
                    while (Volatile.Read(ref _generation) == seen)
                        Monitor.Wait(_gate);
                    Interlocked.Decrement(ref _sleeping);
                }
            }
            seen = Volatile.Read(ref _generation);
            if (Volatile.Read(ref _stop))
                return;
            try
            {
                if (member < _members)
                    _body(member);
            }
            catch (Exception e)
            {
                _failure = e;
            }
            Interlocked.Decrement(ref _running);
        }
    }
}
