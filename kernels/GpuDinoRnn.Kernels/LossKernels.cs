// The output layer, fused: logits = Wya·a + by, softmax, cross-entropy and its gradient, for all
// rows of a step at once (none of it depends on the previous step). CPU twin: CpuBackend.OutputLayer.
using ILGPU;
using ILGPU.Algorithms;

namespace GpuDinoRnn.Kernels;

public static class LossKernels
{
    /// <summary>
    /// For row r = t·B + b: loss[r] = −log softmax(Wya·a_{t+1} + by)[y_r] (nats) and
    /// dy[r] = (softmax − onehot(y_r))·gradScale. Padded rows (y_r &lt; 0) get loss 0 and dy 0.
    /// </summary>
    /// <param name="index">Row r.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="y">Target ids (T, B); -1 marks padding.</param>
    /// <param name="a">Hidden states ((T+1), B, H).</param>
    /// <param name="gradScale">1 / (names in the batch): the loss is a mean over names.</param>
    /// <param name="dy">Gradient with respect to the logits (T, B, V), overwritten.</param>
    /// <param name="loss">Loss per row (T, B), overwritten.</param>
    public static void OutputLayer(
        Index1D index, RnnDims d,
        ArrayView<float> p, ArrayView<int> y, ArrayView<float> a, float gradScale,
        ArrayView<float> dy, ArrayView<float> loss)
    {
        int r = index;
        int row = r * d.V;
        int target = y[r];
        if (target < 0)
        {
            for (int k = 0; k < d.V; k++)
                dy[row + k] = 0f;
            loss[r] = 0f;
            return;
        }
        int ar = (r + d.B) * d.H;
        float max = float.NegativeInfinity;
        float zTarget = 0f;
        for (int k = 0; k < d.V; k++)
        {
            float z = p[d.ByOffset + k];
            int w = d.WyaOffset + k * d.H;
            for (int i = 0; i < d.H; i++)
                z += p[w + i] * a[ar + i];
            dy[row + k] = z;
            if (k == target)
                zTarget = z;
            max = XMath.Max(max, z);
        }
        loss[r] = SoftmaxCrossEntropy(dy, row, d.V, target, zTarget, max, gradScale);
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
