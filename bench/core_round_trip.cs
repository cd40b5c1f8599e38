// How long two cores take to pass a cache line back and forth: `dotnet run bench/core_round_trip.cs
// [CPU_A CPU_B]` (default 0 and 1; Linux). The cpu backend's threads exchange their chunks'
// gradients every step, so on a VM this decides how much a second thread gains: on the 2-vCPU
// VMs of this project's measurements a round trip took 440–545 ns, with two threads at H 50,
// B 32 about 1.5× one thread, and once 170 ns, with 1.76× (bench/speed-log.md).
using System.Diagnostics;
using System.Runtime.InteropServices;

if (!OperatingSystem.IsLinux())
{
    Console.Error.WriteLine("core_round_trip: pins threads with sched_setaffinity, which is Linux's");
    return 2;
}
int a = 0, b = 1;
int cpus = Math.Min(Environment.ProcessorCount, 64); // the affinity mask below is one 64-bit word
if (args.Length is not (0 or 2) || args.Length == 2 && !(int.TryParse(args[0], out a) && int.TryParse(args[1], out b))
    || a == b || Math.Min(a, b) < 0 || Math.Max(a, b) >= cpus)
{
    Console.Error.WriteLine($"core_round_trip: give two different CPUs from 0 to {cpus - 1}, or none for 0 and 1");
    return 2;
}
const int Trips = 100_000, Rounds = 7;
var line = new long[32]; // the counter at [8]: a cache line of its own, away from the array's header
var times = new double[Rounds];
for (int round = 0; round < Rounds; round++)
{
    Volatile.Write(ref line[8], 0);
    // The other core answers each odd value with the next even one.
    var echo = new Thread(() =>
    {
        Affinity.Pin(b);
        for (long i = 1; i < 2 * Trips; i += 2)
        {
            while (Volatile.Read(ref line[8]) != i)
            {
            }
            Volatile.Write(ref line[8], i + 1);
        }
    });
    echo.Start();
    Affinity.Pin(a);
    var clock = Stopwatch.StartNew();
    for (long i = 0; i < 2 * Trips; i += 2)
    {
        Volatile.Write(ref line[8], i + 1);
        while (Volatile.Read(ref line[8]) != i + 2)
        {
        }
    }
    times[round] = clock.Elapsed.TotalNanoseconds / Trips;
    echo.Join();
}
Array.Sort(times);
Console.WriteLine($"CPU {a} <-> CPU {b}: a round trip takes {times[Rounds / 2]:F0} ns (median of {Rounds} rounds of {Trips:N0}; {times[0]:F0}–{times[^1]:F0})");
return 0;

static partial class Affinity
{
    public static void Pin(int cpu)
    {
        ulong mask = 1UL << cpu;
        if (SchedSetAffinity(0, sizeof(ulong), ref mask) != 0)
            throw new InvalidOperationException($"sched_setaffinity to CPU {cpu} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, ref ulong mask);
}
