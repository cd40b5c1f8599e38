// The update rules in float64, written from their usual definitions (PyTorch's documentation):
// the spec the fused kernel and the CPU twin are compared with.
using GpuDinoRnn.Backends;
using GpuDinoRnn.Kernels;

namespace GpuDinoRnn.Tests.Reference;

public sealed class ReferenceOptimizer(OptimizerConfig c, int size)
{
    private readonly double[] _m = new double[size], _v = new double[size];
    private int _t;

    public double[] Step(double[] p, double[] g, double lr, double clip, ClipMode mode)
    {
        _t++;
        var clipped = ReferenceRnn.SgdStep(new double[p.Length], g, -1, clip, mode); // 0 − (−1)·clip(g) = clip(g)
        var next = new double[p.Length];
        for (int e = 0; e < p.Length; e++)
        {
            double ge = clipped[e], pe = p[e];
            switch (c.Kind)
            {
                case OptimizerKind.Sgd:
                    pe -= lr * ge;
                    break;
                case OptimizerKind.Momentum:
                    _m[e] = c.Momentum * _m[e] + ge;
                    pe -= lr * _m[e];
                    break;
                case OptimizerKind.Adam:
                case OptimizerKind.AdamW:
                    if (c.Kind == OptimizerKind.AdamW)
                        pe *= 1 - lr * c.WeightDecay;
                    _m[e] = c.Beta1 * _m[e] + (1 - c.Beta1) * ge;
                    _v[e] = c.Beta2 * _v[e] + (1 - c.Beta2) * ge * ge;
                    double mHat = _m[e] / (1 - Math.Pow(c.Beta1, _t)), vHat = _v[e] / (1 - Math.Pow(c.Beta2, _t));
                    pe -= lr * mHat / (Math.Sqrt(vHat) + c.Eps);
                    break;
                case OptimizerKind.Adagrad:
                    _v[e] += ge * ge;
                    pe -= lr * ge / (Math.Sqrt(_v[e]) + c.Eps);
                    break;
                case OptimizerKind.RmsProp:
                    _v[e] = c.Alpha * _v[e] + (1 - c.Alpha) * ge * ge;
                    pe -= lr * ge / (Math.Sqrt(_v[e]) + c.Eps);
                    break;
            }
            next[e] = pe;
        }
        return next;
    }
}
