// Threads per group for the kernels that give each thread of a group one unit (or logit) of a
// row and a thread several above that: the passes through time and the output layers, in both
// ILGPU backends. Whole warps, and at most 256: a kernel may use up to 255 registers a thread
// (ptxas decides, not we), and a block has 64 K registers, so 256 threads always launch, while
// 1024 would fail with "too many resources" on a kernel of more than 64 registers.
namespace GpuDinoRnn.Backends;

internal static class GroupSize
{
    public const int Max = 256;

    /// <param name="units">Units (or logits) a group has to cover.</param>
    /// <param name="warpSize">The device's warp (1 where it has none).</param>
    /// <param name="maxThreadsPerGroup">The device's limit.</param>
    public static int For(int units, int warpSize, int maxThreadsPerGroup)
    {
        int warp = Math.Max(1, warpSize);
        return Math.Min((units + warp - 1) / warp * warp, Math.Min(Max, maxThreadsPerGroup));
    }
}
