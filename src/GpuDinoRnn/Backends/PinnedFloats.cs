// A float buffer that never moves and starts on a 64-byte boundary, so the kernels can keep a
// raw pointer to it and whole-vector loads never straddle a cache line.
namespace GpuDinoRnn.Backends;

internal sealed unsafe class PinnedFloats
{
    private const int Alignment = 64;
    private readonly float[] _array; // on the pinned object heap: its address is fixed

    public PinnedFloats(int length)
    {
        _array = GC.AllocateArray<float>(length + Alignment / sizeof(float), pinned: true);
        fixed (float* p = _array)
        {
            long misalignment = (long)p % Alignment;
            Offset = misalignment == 0 ? 0 : (int)((Alignment - misalignment) / sizeof(float));
            Ptr = p + Offset;
        }
        Length = length;
    }

    public float* Ptr { get; }
    public int Length { get; }
    private int Offset { get; }
    public Span<float> Span => _array.AsSpan(Offset, Length);
}
