using GpuDinoRnn.Backends;

namespace GpuDinoRnn.Tests.Backends;

public sealed class GroupSizeTests
{
    [Theory]
    [InlineData(5, 32, 1024, 32)]     // CUDA, a small model: one warp, 27 threads idle
    [InlineData(50, 32, 1024, 64)]    // the course's H
    [InlineData(192, 32, 1024, 192)]  // the default recipe's H
    [InlineData(256, 32, 1024, 256)]
    [InlineData(257, 32, 1024, 256)]  // above 256, a thread takes several units
    [InlineData(1000, 32, 1024, 256)] // a large vocabulary's output layer
    [InlineData(50, 64, 1024, 64)]    // an AMD wavefront
    [InlineData(5, 4, 4, 4)]          // ilgpu-cpu
    [InlineData(1, 4, 4, 4)]
    [InlineData(33, 32, 64, 64)]      // a device whose groups are smaller than 256
    [InlineData(7, 0, 16, 7)]         // no warp reported
    public void WholeWarpsAndAtMost256(int units, int warp, int maxThreads, int expected) =>
        Assert.Equal(expected, GroupSize.For(units, warp, maxThreads));
}
