// CpuCells.Fast (FastMath) against CpuCells.Precise (MathF, lane by lane) for every cell,
// forward and backward, on a width with a vector body and a tail; units past H are NaN and must
// stay so. Both run the same formulas: those are held to the float64
// ReferenceStack by StackBackendTests (gradients) and the sampler tests.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Tests.Backends;

public sealed class CpuCellsTests
{
    private const int H = 37, Gs = 40; // gate blocks padded to 40, as the backends pad them

    private static float[] Random(Random random, int n, float scale = 3f) =>
        Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();

    private static float[] Poisoned(int n) => Enumerable.Repeat(float.NaN, n).ToArray();

    [Theory]
    [InlineData(CellKind.Rnn)]
    [InlineData(CellKind.Gru)]
    [InlineData(CellKind.Lstm)]
    public void FastFollowsPreciseForwardAndBackward(CellKind cell)
    {
        var random = new Random((int)cell + 5);
        int g = cell switch { CellKind.Rnn => 1, CellKind.Gru => 3, _ => 4 };
        float[] px = Random(random, g * Gs), pa = Random(random, g * Gs), hPrev = Random(random, Gs, 1f), cPrev = Random(random, Gs);
        float[] dh = Random(random, Gs, 1f), dc = Random(random, Gs, 1f), dhPrev0 = Random(random, Gs, 1f);

        (float[] Act, float[] An, float[] H, float[] C, float[] Dpx, float[] Dpa, float[] DhPrev, float[] DcPrev) Run<TA>()
            where TA : struct, IActivations
        {
            float[] act = Poisoned(g * Gs), an = Poisoned(Gs), h = Poisoned(Gs), c = Poisoned(Gs);
            CpuCells.Forward<TA>(cell, H, Gs, px, pa, hPrev, cPrev, act, an, h, c);
            float[] dpx = Poisoned(g * Gs), dpa = Poisoned(g * Gs), dhPrev = [.. dhPrev0], dcPrev = Poisoned(Gs);
            for (int i = H; i < Gs; i++)
                dhPrev[i] = float.NaN;
            CpuCells.Backward<TA>(cell, H, Gs, act, an, hPrev, cPrev, c, dh, dc, dpx, dpa, dhPrev, dcPrev);
            return (act, an, h, c, dpx, dpa, dhPrev, dcPrev);
        }

        var fast = Run<CpuCells.Fast>();
        var precise = Run<CpuCells.Precise>();

        void Same(string name, float[] a, float[] b, bool written)
        {
            for (int i = 0; i < a.Length; i++)
            {
                bool unit = i % Gs < H;
                if (!unit || !written)
                {
                    Assert.True(float.IsNaN(a[i]) && float.IsNaN(b[i]), $"{name}[{i}] should not be written");
                    continue;
                }
                Assert.True(Math.Abs(a[i] - b[i]) <= 2e-6f * (1 + Math.Abs(b[i])), $"{name}[{i}]: fast {a[i]}, precise {b[i]}");
            }
        }
        bool lstm = cell == CellKind.Lstm, gru = cell == CellKind.Gru;
        Same("act", fast.Act, precise.Act, true);
        Same("an", fast.An, precise.An, gru);
        Same("h", fast.H, precise.H, true);
        Same("c", fast.C, precise.C, lstm);
        Same("dpx", fast.Dpx, precise.Dpx, true);
        Same("dpa", fast.Dpa, precise.Dpa, true);
        Same("dhPrev", fast.DhPrev, precise.DhPrev, true);
        Same("dcPrev", fast.DcPrev, precise.DcPrev, lstm);
    }
}
