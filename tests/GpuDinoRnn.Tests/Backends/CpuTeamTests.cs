// The cpu backend's thread team: every member of a phase runs it exactly once, no other thread
// does, workers that no phase needs go to sleep instead of spinning, a paused member sends the
// team solo for a while, and a failure reaches the caller. Teams larger than the machine's cores are used on purpose (CI has two).
using System.Diagnostics;
using GpuDinoRnn.Backends;

namespace GpuDinoRnn.Tests.Backends;

public sealed class CpuTeamTests
{
    [Fact]
    public void EachPhaseRunsOnItsMembersExactlyOnce()
    {
        const int size = 4, phases = 3000;
        using var team = new CpuTeam(size);
        var runs = new int[phases, size];
        for (int p = 0; p < phases; p++)
        {
            int members = 1 + p * 7 % size; // 1, 4, 3, 2, 1, … in a changing order
            int phase = p;
            team.Run(m => Interlocked.Increment(ref runs[phase, m]), members);
            for (int m = 0; m < size; m++)
                Assert.True(runs[p, m] == (m < members ? 1 : 0), $"phase {p} of {members} members: member {m} ran {runs[p, m]} times");
        }
    }

    [Fact]
    public void WorkersThatNoPhaseNeedsGoToSleepAndWakeForTheNextThatDoes()
    {
        using var team = new CpuTeam(4);
        int ran = 0;
        // Two-member phases, back to back: members 2 and 3 are not needed and must stop spinning.
        var clock = Stopwatch.StartNew();
        while (!(team.IsAsleep(2) && team.IsAsleep(3)) && clock.Elapsed < TimeSpan.FromSeconds(20))
            team.Run(_ => Interlocked.Increment(ref ran), 2);
        Assert.True(team.IsAsleep(2) && team.IsAsleep(3), $"workers 2 and 3 still awake after {ran} two-member phases in {clock.Elapsed}");
        // The phases that do not need them neither wake them nor wait for them.
        for (int p = 0; p < 200; p++)
        {
            team.Run(_ => Interlocked.Increment(ref ran), 2);
            Assert.True(team.IsAsleep(2) && team.IsAsleep(3), $"a two-member phase woke worker 2 or 3 ({p} phases after both slept)");
        }
        // A four-member phase wakes them (once the team is not solo: a slow phase on a loaded
        // machine may have sent it solo, and then the caller would run every part itself).
        while (team.Solo)
            Thread.Sleep(5);
        int caller = Environment.CurrentManagedThreadId;
        var threads = new int[4];
        team.Run(m => threads[m] = Environment.CurrentManagedThreadId, 4);
        Assert.Equal(caller, threads[0]);
        Assert.Equal(4, threads.Distinct().Count());
    }

    /// <summary>
    /// A member that keeps the caller waiting (as one the OS has paused for another program does)
    /// sends the team solo: the caller runs every member's part for a while, then tries the team
    /// again.
    /// </summary>
    [Fact]
    public void APhaseThatKeepsTheCallerWaitingSendsTheTeamSoloForAWhile()
    {
        using var team = new CpuTeam(2, solo: TimeSpan.FromSeconds(1)); // long enough to look at
        int caller = Environment.CurrentManagedThreadId;
        var ran = new int[2];
        team.Run(m => { if (m == 1) Thread.Sleep(20); }, 2);
        Assert.True(team.Solo, "a worker that kept the caller waiting 20 ms did not send the team solo");
        team.Run(m => ran[m] = Environment.CurrentManagedThreadId, 2);
        Assert.Equal([caller, caller], ran);

        var clock = Stopwatch.StartNew();
        while (team.Solo && clock.Elapsed < TimeSpan.FromSeconds(10))
            Thread.Sleep(10);
        Assert.False(team.Solo, "still solo after 10 s");
        team.Run(m => ran[m] = Environment.CurrentManagedThreadId, 2);
        Assert.Equal(caller, ran[0]);
        Assert.NotEqual(caller, ran[1]);
    }

    /// <summary>
    /// A VM's host takes a core away now and then, so a solo starts short; a team held up again
    /// soon after it is back (as beside a busy program) stays solo twice as long each time, up to
    /// 50 ms, and a hold-up long after the last starts short again.
    /// </summary>
    [Fact]
    public void ASoloGrowsWhileTheTeamKeepsBeingHeldUpAndStartsShortAgainLater()
    {
        var first = TimeSpan.FromMilliseconds(20); // 10 solos' length (200 ms) is "soon" even on a loaded machine
        using var team = new CpuTeam(2, solo: first);
        var lengths = new List<double>();
        void HoldUp()
        {
            while (team.Solo)
                Thread.Sleep(1);
            int solos = team.Solos;
            team.Run(m => { if (m == 1) Thread.Sleep(50); }, 2);
            Assert.True(team.Solos == solos + 1, "a worker that kept the caller waiting 50 ms did not send the team solo");
            lengths.Add(team.SoloLength.TotalMilliseconds);
        }
        for (int i = 0; i < 4; i++)
            HoldUp();
        Assert.Equal([20, 40, 50, 50], lengths.Select(x => Math.Round(x)));
        while (team.Solo)
            Thread.Sleep(1);
        Thread.Sleep(600); // more than 10 × 50 ms
        HoldUp();
        Assert.Equal(20, Math.Round(lengths[^1]));
    }

    /// <summary>
    /// A phase whose parts wait for each other inside (the cpu backend's chunks, then each
    /// thread's update once every chunk is done): a worker held up before the barrier keeps the
    /// caller waiting inside its own part, not at the phase's end, and that sends the team solo
    /// too, once the caller says so; a short wait does not.
    /// </summary>
    [Fact]
    public void AWaitInsideTheCallersPartSendsTheTeamSoloWhenLong()
    {
        // One phase on a new team (the caller would wait forever for a worker while solo).
        static int Solos(int workerMs)
        {
            using var team = new CpuTeam(2, solo: TimeSpan.FromSeconds(1));
            int started = 0, arrived = 0;
            team.Run(m =>
            {
                if (m == 1)
                {
                    Volatile.Write(ref started, 1); // as a worker that has taken a chunk
                    if (workerMs > 0)
                        Thread.Sleep(workerMs);
                    Volatile.Write(ref arrived, 1);
                    return;
                }
                while (Volatile.Read(ref started) == 0) // a sleeping worker's wake is not counted
                    Thread.SpinWait(20);
                long worked = Stopwatch.GetTimestamp();
                while (Volatile.Read(ref arrived) == 0)
                    Thread.SpinWait(20);
                team.NoteWait(0, Stopwatch.GetTimestamp() - worked);
            }, 2);
            return team.Solos;
        }
        Assert.Equal(1, Solos(30));
        // Waiting for a worker that is simply there is no hold-up; a loaded machine may still
        // pause it for a while now and then, so one of five tries must stay with the team.
        Assert.Contains(0, Enumerable.Range(0, 5).Select(_ => Solos(0)));
    }

    /// <summary>
    /// Waking a sleeping worker takes the OS a while, which says little of busy cores: a phase
    /// that had to wake one is let wait longer (a 1 ms part here) before the team goes solo. A
    /// loaded machine may still take too long now and then, so one of five tries must pass.
    /// </summary>
    [Fact]
    public void APhaseThatHadToWakeAWorkerMayWaitLonger()
    {
        using var team = new CpuTeam(2);
        bool stayed = false;
        for (int attempt = 0; attempt < 5 && !stayed; attempt++)
        {
            while (!team.IsAsleep(1) || team.Solo)
                Thread.Sleep(1);
            team.Run(m => { if (m == 1) Thread.Sleep(1); }, 2);
            stayed = !team.Solo;
        }
        Assert.True(stayed, "every phase that woke a worker and waited 1 ms for it sent the team solo");
    }

    [Fact]
    public void TheCallersOwnFailureWaitsForTheWorkersAndReachesItsCaller()
    {
        using var team = new CpuTeam(3);
        var done = new int[3];
        var e = Assert.Throws<AggregateException>(() => team.Run(m =>
        {
            if (m == 0)
                throw new InvalidOperationException("member 0 failed");
            Thread.Sleep(30);
            Volatile.Write(ref done[m], 1);
        }, 3));
        Assert.Equal("member 0 failed", Assert.Single(e.InnerExceptions).Message);
        Assert.Equal([0, 1, 1], done); // the workers' parts had finished when Run returned
        var seen = new int[3];
        team.Run(m => Interlocked.Increment(ref seen[m]), 3);
        Assert.Equal([1, 1, 1], seen);
    }

    [Fact]
    public void AWorkersFailureReachesTheCallerAndTheTeamWorksOn()
    {
        using var team = new CpuTeam(3);
        var e = Assert.Throws<AggregateException>(() => team.Run(m =>
        {
            if (m == 2)
                throw new InvalidOperationException("member 2 failed");
        }, 3));
        Assert.Equal("member 2 failed", e.InnerException!.Message);
        var seen = new int[3];
        team.Run(m => Interlocked.Increment(ref seen[m]), 3);
        Assert.Equal([1, 1, 1], seen);
    }

    /// <summary>After Dispose the workers are gone: a phase is refused, not waited for for ever.</summary>
    [Fact]
    public void ADisposedTeamRefusesAPhase()
    {
        var team = new CpuTeam(2);
        team.Dispose();
        team.Dispose(); // twice is harmless
        var run = Task.Run(() => team.Run(_ => { }, 2));
        Assert.True(((IAsyncResult)run).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(30)), "a phase after Dispose was still waiting after 30 s");
        Assert.IsType<ObjectDisposedException>(Assert.Throws<AggregateException>(run.Wait).InnerException);
        Assert.Throws<ObjectDisposedException>(() => team.Run(_ => { }, 1));
    }
}
