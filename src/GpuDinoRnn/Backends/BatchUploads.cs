// A step's input and target ids on their way to the device, without the host waiting for it.
// ILGPU's CopyFromCPU synchronises the stream: with it, the host could queue step n + 1's launches
// only once step n had run, and a GPU would idle while they were queued. Here the ids are copied
// into one of Slots page-locked host buffers and sent by copies queued on the stream ahead of the
// step's kernels. A queued copy reads its buffer when the device gets to it, so a buffer is
// refilled only after the stream has been synchronised once the ring has gone round (the host
// then runs at most Slots steps ahead of the device).
using GpuDinoRnn.Data;
using ILGPU;
using ILGPU.Runtime;

namespace GpuDinoRnn.Backends;

internal sealed class BatchUploads(Accelerator accelerator) : IDisposable
{
    /// <summary>Steps the host may queue before it waits for the device.</summary>
    public const int Slots = 8;

    private readonly PageLockedArray1D<int>?[] _slots = new PageLockedArray1D<int>?[Slots]; // each: X, then Y
    private int _next;      // the slot the next batch goes to
    private int _capacity;  // ids (X and Y together) every slot holds

    /// <summary>How many times an upload has waited for the device (for tests).</summary>
    public int Waits { get; private set; }

    /// <summary>Queues the copies of batch.X to x and batch.Y to y (each T·B ids) on the default stream.</summary>
    public void Upload(Batch batch, ArrayView1D<int, Stride1D.Dense> x, ArrayView1D<int, Stride1D.Dense> y)
    {
        int rows = batch.X.Length;
        var stream = accelerator.DefaultStream;
        if (_next == 0 || 2 * rows > _capacity)
        {
            // Every copy queued so far has read its slot once the stream is idle.
            stream.Synchronize();
            Waits++;
            _next = 0;
            if (_capacity == 0 || 2 * rows > _capacity)
                Grow(Math.Max(2 * rows, 1));
        }
        var slot = _slots[_next]!;
        _next = (_next + 1) % Slots;
        batch.X.CopyTo(slot.Span);
        batch.Y.CopyTo(slot.Span[rows..]);
        ((ArrayView<int>)x).SubView(0, rows).CopyFrom(stream, slot.ArrayView.SubView(0, rows));
        ((ArrayView<int>)y).SubView(0, rows).CopyFrom(stream, slot.ArrayView.SubView(rows, rows));
    }

    public void Dispose()
    {
        try
        {
            accelerator.DefaultStream.Synchronize(); // no queued copy may read a slot after it is freed
            foreach (var slot in _slots)
                slot?.Dispose();
        }
        catch (AcceleratorException)
        {
            // A device that has failed runs nothing more, and unlocking its memory throws too: the
            // slots are left to the GC, and the error was reported where it happened.
        }
    }

    private void Grow(int ids)
    {
        _capacity = (int)Math.Max(ids, Math.Min(2L * _capacity, int.MaxValue));
        for (int s = 0; s < Slots; s++)
        {
            _slots[s]?.Dispose();
            _slots[s] = accelerator.AllocatePageLocked1D<int>(_capacity, uninitialized: true);
        }
    }
}
