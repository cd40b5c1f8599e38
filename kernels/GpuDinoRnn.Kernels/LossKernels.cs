// The output layer, fused: logits = Wya·a + by, softmax, cross-entropy and its gradient, for all
// rows of a step at once (none of it depends on the previous step), a thread group per row.
// CPU twin: CpuBackend.OutputLayer.
using ILGPU;
using ILGPU.Algorithms;

namespace GpuDinoRnn.Kernels;

public static class LossKernels
{
    /// <summary>
    /// For row r = t·B + b: loss[r] = −log softmax(Wya·a_{t+1} + by)[y_r] (nats) and
    /// dy[r] = (softmax − onehot(y_r))·gradScale. Padded rows (y_r &lt; 0) get loss 0 and dy 0.
    /// Launch: grid rows groups, any group size (see RowOutput).
    /// </summary>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="y">Target ids (T, B); -1 marks padding.</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    /// <param name="gradScale">1 / (names in the batch): the loss is a mean over names.</param>
    /// <param name="dy">Gradient with respect to the logits (T, B, V), overwritten.</param>
    /// <param name="loss">Loss per row (T, B), overwritten.</param>
    public static void OutputLayer(
        RnnDims d, ArrayView<float> p, ArrayView<int> y, ArrayView<float> a, float gradScale,
        ArrayView<float> dy, ArrayView<float> loss)
    {
        int r = Grid.IdxX;
        RowOutput(p, d.WyaOffset, d.ByOffset, d.V, d.H, a, (r + d.B) * d.H, r, y[r], gradScale, dy, loss);
    }

    /// <summary>
    /// One row of an output layer by one thread group, shared with StackKernels.OutputLayer: the
    /// group's threads take logits k, k + group size, … (each by + Wya[k]·input, summed over the H
    /// inputs in order) into dy, then after a barrier thread 0 turns them into the loss and dy
    /// (SoftmaxCrossEntropy). A thread per logit, not per row: the row's V·H multiply-adds would
    /// otherwise be one thread's chain while a step's few hundred rows leave the GPU idle.
    /// </summary>
    /// <param name="input">The output layer's input; this row's H values start at inputRow.</param>
    /// <param name="target">y of the row; &lt; 0 for padding (loss 0, dy 0).</param>
    internal static void RowOutput(
        ArrayView<float> p, int wyaOffset, int byOffset, int v, int h, ArrayView<float> input, int inputRow,
        int r, int target, float gradScale, ArrayView<float> dy, ArrayView<float> loss)
    {
        int lane = Group.IdxX;
        int size = Group.DimX;
        int row = r * v;
        if (target < 0)
        {
            for (int k = lane; k < v; k += size)
                dy[row + k] = 0f;
            if (lane == 0)
                loss[r] = 0f;
            return;
        }
        for (int k = lane; k < v; k += size)
        {
            float z = p[byOffset + k];
            int w = wyaOffset + k * h;
            for (int i = 0; i < h; i++)
                z += p[w + i] * input[inputRow + i];
            dy[row + k] = z;
        }
        Group.Barrier();
        if (lane != 0)
            return;
        float max = float.NegativeInfinity;
        for (int k = 0; k < v; k++)
            max = XMath.Max(max, dy[row + k]);
        loss[r] = SoftmaxCrossEntropy(dy, row, v, target, dy[row + target], max, gradScale);
    }

    /// <summary>
    /// The fused tail of an output layer, shared with StackKernels.OutputLayer: dy[row …] holds
    /// the V logits (max their largest, zTarget the target's) and becomes (softmax − onehot)·gradScale;
    /// returns −log softmax[target] = log Σ exp(z − max) − (zTarget − max), finite even when p underflows.
    /// </summary>
    public static float SoftmaxCrossEntropy(ArrayView<float> dy, int row, int v, int target, float zTarget, float max, float gradScale)
    {
        float sum = 0f;
        for (int k = 0; k < v; k++)
        {
            float e = XMath.Exp(dy[row + k] - max);
            dy[row + k] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (int k = 0; k < v; k++)
        {
            float prob = dy[row + k] * inv;
            dy[row + k] = (k == target ? prob - 1f : prob) * gradScale;
        }
        return XMath.Log(sum) - (zTarget - max);
    }

    /// <summary>
    /// One thread: history[slot] = Σ loss[r] / names, summed in row order, so the trainer can
    /// read many steps' losses at once instead of syncing every step. A non-finite gradient
    /// (its partial sums of squares) is recorded as NaN, so the trainer sees it with the losses.
    /// </summary>
    /// <param name="index">Only index 0 is launched.</param>
    /// <param name="rows">Rows in the step.</param>
    /// <param name="loss">Loss per row.</param>
    /// <param name="names">Names in the batch.</param>
    /// <param name="partial">The gradient's partial sums of squares.</param>
    /// <param name="history">Per-step losses, written at slot.</param>
    /// <param name="slot">Where this step's loss goes.</param>
    public static void BatchLoss(
        Index1D index, int rows, ArrayView<float> loss, float names, ArrayView<float> partial,
        ArrayView<float> history, int slot)
    {
        float sum = 0f;
        for (int r = 0; r < rows; r++)
            sum += loss[r];
        float sq = 0f;
        for (int k = 0; k < UpdateKernels.NormPartials; k++)
            sq += partial[k];
        history[slot + index] = sq <= float.MaxValue ? sum / names : float.NaN;
    }
}
