// Every model beyond the course's one vanilla layer on the device: rnn, gru and lstm cells, L
// stacked layers, dropout between them. Each cell's forward and backward sit side by side; a
// pass is one launch per layer for all time steps (a thread group per name steps through time
// with barriers, each thread owning whole units so the cell update is thread-local). Spec:
// tests/Reference/ReferenceStack (CellForward/CellBackward are the per-unit bodies below).
//
// Buffers, per layer l (each a view the host cuts out of one allocation):
//   h, c   ((T+1), B, H)  states, slot 0 the initial state (c only for the LSTM)
//   act    (T, B, G·H)    gates after their activation
//   an     (T, B, H)      the GRU's Waa_n·h₋ (its candidate needs it backward)
//   u      (T, B, H)      input of layer l ≥ 1 (h of the layer below × its dropout factor);
//                         u of input L feeds the output layer
//   dPx, dPa (T, B, G·H)  gradients of Wax·u + b and of Waa·h₋ (they differ only in the GRU)
using ILGPU;
using ILGPU.Algorithms;

namespace GpuDinoRnn.Kernels;

public static class StackKernels
{
    private static float Sigmoid(float z) => 1f / (1f + XMath.Exp(-z));

    /// <summary>
    /// Slot 0 of every layer's h (and c): the carried state of each name (fromCarry = 1) or
    /// zeros. carry is (B, StateSize): per name layer 0's h, its c (LSTM), layer 1's h, …
    /// </summary>
    /// <param name="index">b·StateSize + s.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="carry">The carried states (B, StateSize).</param>
    /// <param name="fromCarry">1: start from carry; 0: from zeros.</param>
    /// <param name="h">Every layer's h, L × ((T+1), B, H).</param>
    /// <param name="c">Every layer's c (LSTM; unused otherwise).</param>
    public static void StartState(Index1D index, StackDims d, ArrayView<float> carry, int fromCarry, ArrayView<float> h, ArrayView<float> c)
    {
        float value = fromCarry != 0 ? carry[index] : 0f;
        int e = StateElement(d, index);
        if (IsC(d, index))
            c[e] = value;
        else
            h[e] = value;
    }

    /// <summary>Keeps each name's final state (slot T of every layer) for the next step, in carry's layout.</summary>
    /// <param name="index">b·StateSize + s.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="h">Every layer's h.</param>
    /// <param name="c">Every layer's c (LSTM).</param>
    /// <param name="carry">The carried states (B, StateSize), overwritten.</param>
    public static void CarryState(Index1D index, StackDims d, ArrayView<float> h, ArrayView<float> c, ArrayView<float> carry)
    {
        int e = StateElement(d, index) + d.T * d.B * d.H;
        carry[index] = IsC(d, index) ? c[e] : h[e];
    }

    /// <summary>Where element b·StateSize + s of the carry lives in slot 0 of h or c.</summary>
    private static int StateElement(StackDims d, int index)
    {
        int stateSize = d.Layers * d.StatePerLayer;
        int b = index / stateSize;
        int s = index - b * stateSize;
        int layer = s / d.StatePerLayer;
        int k = s - layer * d.StatePerLayer;
        return layer * (d.Rows + d.B) * d.H + b * d.H + (k >= d.H ? k - d.H : k);
    }

    /// <summary>Whether element b·StateSize + s of the carry is a c (the LSTM's second half of a layer's state).</summary>
    private static bool IsC(StackDims d, int index) => index % d.StatePerLayer >= d.H;

    /// <summary>
    /// The forward passes' copy of the recurrent and input weights, transposed so that the threads
    /// of a warp (consecutive units, so consecutive rows gi of a gate block) read consecutive floats
    /// at each j; row-major, each read would be a cache line of its own. Per layer l, at
    /// l·2·H·GH: Waa_lᵀ (H, GH), then Wax_lᵀ (H, GH) above layer 0 (zeros for layer 0, whose input
    /// is one-hot and read from the parameters).
    /// </summary>
    /// <param name="index">l·2·H·GH + part·H·GH + j·GH + gi.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="wT">The transposed weights, overwritten.</param>
    public static void TransposeWeights(Index1D index, StackDims d, ArrayView<float> p, ArrayView<float> wT)
    {
        int block = d.H * d.GH;
        int layer = index / (2 * block);
        int rest = index - layer * 2 * block;
        int part = rest / block;
        int e = rest - part * block;
        int j = e / d.GH, gi = e - j * d.GH;
        if (part == 0)
            wT[index] = p[d.WaaOffset(layer) + gi * d.H + j];
        else
            wT[index] = layer > 0 ? p[d.WaxOffset(layer) + gi * d.H + j] : 0f;
    }

    /// <summary>Row gi of Wax·u + b at row r: layer 0 takes the one-hot x (−1 the zero vector), above it u (Waxᵀ from wT).</summary>
    private static float Px(StackDims d, ArrayView<float> p, ArrayView<float> wT, int layer, int gi, int xr, ArrayView<float> u, int r)
    {
        float z = p[d.BOffset(layer) + gi];
        if (layer == 0)
        {
            if (xr >= 0)
                z += p[d.WaxOffset(0) + gi * d.InputsOf(0) + xr];
            return z;
        }
        int w = (2 * layer + 1) * d.H * d.GH + gi;
        for (int j = 0; j < d.H; j++)
            z += wT[w + j * d.GH] * u[r * d.H + j];
        return z;
    }

    /// <summary>Row gi of Waa·h₋, h₋ starting at prev (Waaᵀ from wT).</summary>
    private static float Pa(StackDims d, ArrayView<float> wT, int layer, int gi, ArrayView<float> h, int prev)
    {
        float z = 0f;
        int w = 2 * layer * d.H * d.GH + gi;
        for (int j = 0; j < d.H; j++)
            z += wT[w + j * d.GH] * h[prev + j];
        return z;
    }

    /// <summary>
    /// Layer `layer`'s forward pass in one launch: one group per name walks t = 0 … T−1 with a
    /// barrier between steps (a step needs all of the previous state); each thread owns units
    /// i, i + group size, … and computes all G gates of its unit.
    /// rnn: h = tanh(px + pa).
    /// gru: r = σ(px_r + pa_r), z = σ(px_z + pa_z), n = tanh(px_n + r·pa_n), h = (1 − z)·n + z·h₋.
    /// lstm: i, f, o = σ(px + pa), g = tanh(px + pa), c = f·c₋ + i·g, h = o·tanh(c).
    /// A padded step (target &lt; 0) copies h and c forward, so slot T holds each name's final state.
    /// Layers above 0 first build their input u = h_below × the dropout factor of input `layer`.
    /// Launch: grid B groups, any group size.
    /// </summary>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters (flat layout of <see cref="StackDims"/>).</param>
    /// <param name="wT">The transposed weights (TransposeWeights).</param>
    /// <param name="x">Input ids (T, B); −1 is START (the zero vector).</param>
    /// <param name="y">Target ids (T, B); −1 marks padding.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="below">h of the layer below ((T+1), B, H); unused for layer 0.</param>
    /// <param name="h">This layer's h ((T+1), B, H), slot 0 set.</param>
    /// <param name="c">This layer's c ((T+1), B, H) (LSTM), slot 0 set.</param>
    /// <param name="act">Gates after their activation (T, B, G·H), overwritten.</param>
    /// <param name="an">The GRU's Waa_n·h₋ (T, B, H), overwritten.</param>
    /// <param name="u">This layer's input (T, B, H), overwritten; unused for layer 0.</param>
    /// <param name="drop">This step's dropout.</param>
    public static void ForwardPass(
        StackDims d, ArrayView<float> p, ArrayView<float> wT, ArrayView<int> x, ArrayView<int> y, int layer, ArrayView<float> below,
        ArrayView<float> h, ArrayView<float> c, ArrayView<float> act, ArrayView<float> an, ArrayView<float> u, DropoutSettings drop)
    {
        int b = Grid.IdxX;
        int tid = Group.IdxX;
        int size = Group.DimX;
        int H = d.H;
        if (layer > 0)
        {
            // The whole input is known (the layer below has finished): build it once, up front.
            for (int k = tid; k < d.T * H; k += size)
            {
                int t = k / H;
                int j = k - t * H;
                int r = t * d.B + b;
                u[r * H + j] = below[(r + d.B) * H + j] * drop.Factor(layer, t, b, j);
            }
            Group.Barrier();
        }
        for (int t = 0; t < d.T; t++)
        {
            int r = t * d.B + b;
            int prev = r * H;
            int next = (r + d.B) * H;
            int ra = r * d.GH;
            bool padded = y[r] < 0;
            int xr = x[r];
            for (int i = tid; i < H; i += size)
            {
                if (padded)
                {
                    h[next + i] = h[prev + i];
                    if (d.Cell == CellKind.Lstm)
                        c[next + i] = c[prev + i];
                    continue;
                }
                if (d.Cell == CellKind.Rnn)
                {
                    float a = KernelMath.Tanh(Px(d, p, wT, layer, i, xr, u, r) + Pa(d, wT, layer, i, h, prev));
                    act[ra + i] = a;
                    h[next + i] = a;
                }
                else if (d.Cell == CellKind.Gru)
                {
                    float rg = Sigmoid(Px(d, p, wT, layer, i, xr, u, r) + Pa(d, wT, layer, i, h, prev));
                    float zg = Sigmoid(Px(d, p, wT, layer, H + i, xr, u, r) + Pa(d, wT, layer, H + i, h, prev));
                    float aN = Pa(d, wT, layer, 2 * H + i, h, prev);
                    float ng = KernelMath.Tanh(Px(d, p, wT, layer, 2 * H + i, xr, u, r) + rg * aN);
                    act[ra + i] = rg;
                    act[ra + H + i] = zg;
                    act[ra + 2 * H + i] = ng;
                    an[r * H + i] = aN;
                    h[next + i] = (1f - zg) * ng + zg * h[prev + i];
                }
                else
                {
                    float ig = Sigmoid(Px(d, p, wT, layer, i, xr, u, r) + Pa(d, wT, layer, i, h, prev));
                    float fg = Sigmoid(Px(d, p, wT, layer, H + i, xr, u, r) + Pa(d, wT, layer, H + i, h, prev));
                    float gg = KernelMath.Tanh(Px(d, p, wT, layer, 2 * H + i, xr, u, r) + Pa(d, wT, layer, 2 * H + i, h, prev));
                    float og = Sigmoid(Px(d, p, wT, layer, 3 * H + i, xr, u, r) + Pa(d, wT, layer, 3 * H + i, h, prev));
                    act[ra + i] = ig;
                    act[ra + H + i] = fg;
                    act[ra + 2 * H + i] = gg;
                    act[ra + 3 * H + i] = og;
                    float cn = fg * c[prev + i] + ig * gg;
                    c[next + i] = cn;
                    h[next + i] = og * KernelMath.Tanh(cn);
                }
            }
            Group.Barrier();
        }
    }

    /// <summary>
    /// The output layer, fused, for row r = t·B + b: u = h_top × the dropout factor of input L
    /// (kept for dWya), logits = Wya·u + by, loss[r] = −log softmax(logits)[y_r] and
    /// dy[r] = (softmax − onehot(y_r))·gradScale. Padded rows get loss 0 and dy 0.
    /// Launch: grid rows groups, any group size (LossKernels.RowOutput).
    /// </summary>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="y">Target ids (T, B); −1 marks padding.</param>
    /// <param name="top">h of the top layer ((T+1), B, H).</param>
    /// <param name="u">The output layer's input (T, B, H), overwritten.</param>
    /// <param name="gradScale">1 / (names in the batch): the loss is a mean over names.</param>
    /// <param name="dy">Gradient with respect to the logits (T, B, V), overwritten.</param>
    /// <param name="loss">Loss per row (T, B), overwritten.</param>
    /// <param name="drop">This step's dropout.</param>
    public static void OutputLayer(
        StackDims d, ArrayView<float> p, ArrayView<int> y, ArrayView<float> top, ArrayView<float> u,
        float gradScale, ArrayView<float> dy, ArrayView<float> loss, DropoutSettings drop)
    {
        int r = Grid.IdxX;
        int t = r / d.B;
        int b = r - t * d.B;
        int ur = r * d.H;
        // Padded rows too: dWya reads u of every row (times their dy of 0).
        for (int i = Group.IdxX; i < d.H; i += Group.DimX)
            u[ur + i] = top[(r + d.B) * d.H + i] * drop.Factor(d.Layers, t, b, i);
        Group.Barrier();
        LossKernels.RowOutput(p, d.WyaOffset, d.ByOffset, d.V, d.H, u, ur, r, y[r], gradScale, dy, loss);
    }

    /// <summary>
    /// Layer `layer`'s backpropagation through time in one launch, the mirror of
    /// <see cref="ForwardPass"/>: one group per name walks t = T−1 … 0 with a barrier between
    /// steps. The gradient of h at step t is the external part (top layer: Wyaᵀ·dy × the dropout
    /// factor of input L; below: what <see cref="InputGradients"/> of the layer above left in
    /// dhExt), the recurrent part Waaᵀ·dPa(t+1) and the part the cell passes straight to h₋
    /// (the GRU's z·dh), which each thread keeps for its own units in dhc with the LSTM's dc.
    /// A padded step has dPx = dPa = 0 and hands its whole dh (and dc) to the step before.
    /// Launch: grid B groups, any group size.
    /// </summary>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="y">Target ids (T, B); −1 marks padding.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="h">This layer's h ((T+1), B, H).</param>
    /// <param name="c">This layer's c ((T+1), B, H) (LSTM).</param>
    /// <param name="act">Gates after their activation (T, B, G·H).</param>
    /// <param name="an">The GRU's Waa_n·h₋ (T, B, H).</param>
    /// <param name="dy">Gradient with respect to the logits (T, B, V) (top layer).</param>
    /// <param name="dhExt">Gradient with respect to h from the layer above (T, B, H) (other layers).</param>
    /// <param name="dhc">Scratch (2, B, H): the direct part of dh₋ and the LSTM's dc₋, per name and unit.</param>
    /// <param name="dPx">Gradient with respect to Wax·u + b (T, B, G·H), overwritten.</param>
    /// <param name="dPa">Gradient with respect to Waa·h₋ (T, B, G·H), overwritten.</param>
    /// <param name="drop">This step's dropout.</param>
    public static void BackwardPass(
        StackDims d, ArrayView<float> p, ArrayView<int> y, int layer, ArrayView<float> h, ArrayView<float> c,
        ArrayView<float> act, ArrayView<float> an, ArrayView<float> dy, ArrayView<float> dhExt, ArrayView<float> dhc,
        ArrayView<float> dPx, ArrayView<float> dPa, DropoutSettings drop)
    {
        int b = Grid.IdxX;
        int tid = Group.IdxX;
        int size = Group.DimX;
        int H = d.H;
        int GH = d.GH;
        int dhDirect = b * H;
        int dcNext = (d.B + b) * H;
        bool isTop = layer == d.Layers - 1;
        int waa = d.WaaOffset(layer);
        for (int i = tid; i < H; i += size)
        {
            dhc[dhDirect + i] = 0f;
            dhc[dcNext + i] = 0f;
        }
        for (int t = d.T - 1; t >= 0; t--)
        {
            int r = t * d.B + b;
            int prev = r * H;
            int next = (r + d.B) * H;
            int ra = r * GH;
            bool padded = y[r] < 0;
            for (int i = tid; i < H; i += size)
            {
                float dh = dhc[dhDirect + i];
                if (t + 1 < d.T)
                {
                    int rn = (r + d.B) * GH;
                    for (int gi = 0; gi < GH; gi++)
                        dh += p[waa + gi * H + i] * dPa[rn + gi];
                }
                if (padded)
                {
                    dhc[dhDirect + i] = dh;
                    for (int g = 0; g < d.Gates; g++)
                    {
                        dPx[ra + g * H + i] = 0f;
                        dPa[ra + g * H + i] = 0f;
                    }
                    continue;
                }
                if (isTop)
                {
                    float ext = 0f;
                    for (int k = 0; k < d.V; k++)
                        ext += p[d.WyaOffset + k * H + i] * dy[r * d.V + k];
                    dh += ext * drop.Factor(d.Layers, t, b, i);
                }
                else
                {
                    dh += dhExt[r * H + i];
                }
                if (d.Cell == CellKind.Rnn)
                {
                    float a = act[ra + i];
                    float dz = dh * (1f - a * a);
                    dPx[ra + i] = dz;
                    dPa[ra + i] = dz;
                    dhc[dhDirect + i] = 0f;
                }
                else if (d.Cell == CellKind.Gru)
                {
                    float rg = act[ra + i];
                    float zg = act[ra + H + i];
                    float ng = act[ra + 2 * H + i];
                    float dn = dh * (1f - zg) * (1f - ng * ng);
                    float dr = dn * an[r * H + i] * rg * (1f - rg);
                    float dz = dh * (h[prev + i] - ng) * zg * (1f - zg);
                    dPx[ra + i] = dr;
                    dPa[ra + i] = dr;
                    dPx[ra + H + i] = dz;
                    dPa[ra + H + i] = dz;
                    dPx[ra + 2 * H + i] = dn;
                    dPa[ra + 2 * H + i] = dn * rg;
                    dhc[dhDirect + i] = dh * zg;
                }
                else
                {
                    float ig = act[ra + i];
                    float fg = act[ra + H + i];
                    float gg = act[ra + 2 * H + i];
                    float og = act[ra + 3 * H + i];
                    float tc = KernelMath.Tanh(c[next + i]);
                    float dc = dhc[dcNext + i] + dh * og * (1f - tc * tc);
                    float di = dc * gg * ig * (1f - ig);
                    float df = dc * c[prev + i] * fg * (1f - fg);
                    float dg = dc * ig * (1f - gg * gg);
                    float dO = dh * tc * og * (1f - og);
                    dPx[ra + i] = di;
                    dPa[ra + i] = di;
                    dPx[ra + H + i] = df;
                    dPa[ra + H + i] = df;
                    dPx[ra + 2 * H + i] = dg;
                    dPa[ra + 2 * H + i] = dg;
                    dPx[ra + 3 * H + i] = dO;
                    dPa[ra + 3 * H + i] = dO;
                    dhc[dhDirect + i] = 0f;
                    dhc[dcNext + i] = dc * fg;
                }
            }
            Group.Barrier();
        }
    }

    /// <summary>
    /// The external gradient layer `layer` hands down to the layer below:
    /// dhExt[r, j] = (Σ_gi Wax[gi, j]·dPx[r, gi]) × the dropout factor of input `layer`.
    /// Padded rows get 0 (their dPx is 0). Only for layers ≥ 1.
    /// </summary>
    /// <param name="index">r·H + j.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="p">Parameters.</param>
    /// <param name="layer">The layer (≥ 1) whose input gradient is wanted.</param>
    /// <param name="dPx">That layer's dPx (T, B, G·H).</param>
    /// <param name="dhExt">Gradient with respect to h of the layer below (T, B, H), overwritten.</param>
    /// <param name="drop">This step's dropout.</param>
    public static void InputGradients(Index1D index, StackDims d, ArrayView<float> p, int layer, ArrayView<float> dPx, ArrayView<float> dhExt, DropoutSettings drop)
    {
        int r = index / d.H;
        int j = index - r * d.H;
        int t = r / d.B;
        int b = r - t * d.B;
        int wax = d.WaxOffset(layer);
        int ra = r * d.GH;
        float sum = 0f;
        for (int gi = 0; gi < d.GH; gi++)
            sum += p[wax + gi * d.H + j] * dPx[ra + gi];
        dhExt[index] = sum * drop.Factor(layer, t, b, j);
    }

    /// <summary>
    /// Every weight gradient, one element of the flat buffer per thread, each a sum over all rows
    /// in a fixed order (no atomics, so results are identical on every run):
    /// dWax_l[gi, v] = Σ dPx_l[r, gi]·[x_r = v] (layer 0), Σ dPx_l[r, gi]·u_l[r, j] (above),
    /// dWaa_l[gi, j] = Σ dPa_l[r, gi]·h_l,t[r, j], db_l[gi] = Σ dPx_l[r, gi],
    /// dWya[k, i] = Σ dy[r, k]·u_L[r, i], dby[k] = Σ dy[r, k].
    /// Padded rows contribute nothing: their dPx, dPa and dy are 0.
    /// </summary>
    /// <param name="index">Element of the flat gradient buffer.</param>
    /// <param name="d">Shapes.</param>
    /// <param name="x">Input ids (T, B).</param>
    /// <param name="h">Every layer's h, L × ((T+1), B, H).</param>
    /// <param name="u">Inputs 1 … L, L × (T, B, H) (input l at (l−1)·T·B·H).</param>
    /// <param name="dy">Gradient with respect to the logits (T, B, V).</param>
    /// <param name="dPx">Every layer's dPx, L × (T, B, G·H).</param>
    /// <param name="dPa">Every layer's dPa, L × (T, B, G·H).</param>
    /// <param name="g">Gradients, overwritten (flat layout of <see cref="StackDims"/>).</param>
    public static void WeightGradients(
        Index1D index, StackDims d, ArrayView<int> x, ArrayView<float> h, ArrayView<float> u, ArrayView<float> dy,
        ArrayView<float> dPx, ArrayView<float> dPa, ArrayView<float> g)
    {
        int e = index;
        int rows = d.Rows;
        int H = d.H;
        int GH = d.GH;
        int uStride = rows * H;
        float sum = 0f;
        for (int l = 0; l < d.Layers; l++)
        {
            int dOff = l * rows * GH;
            int inputs = d.InputsOf(l);
            int wax = d.WaxOffset(l);
            int waa = d.WaaOffset(l);
            int bias = d.BOffset(l);
            if (e >= wax && e < wax + GH * inputs)
            {
                int gi = (e - wax) / inputs;
                int j = e - wax - gi * inputs;
                int ul = (l - 1) * uStride;
                for (int r = 0; r < rows; r++)
                {
                    if (l == 0)
                    {
                        if (x[r] == j)
                            sum += dPx[dOff + r * GH + gi];
                    }
                    else
                    {
                        sum += dPx[dOff + r * GH + gi] * u[ul + r * H + j];
                    }
                }
                g[e] = sum;
                return;
            }
            if (e >= waa && e < waa + GH * H)
            {
                int gi = (e - waa) / H;
                int j = e - waa - gi * H;
                int hl = l * (rows + d.B) * H;
                for (int r = 0; r < rows; r++)
                    sum += dPa[dOff + r * GH + gi] * h[hl + r * H + j];
                g[e] = sum;
                return;
            }
            if (e >= bias && e < bias + GH)
            {
                int gi = e - bias;
                for (int r = 0; r < rows; r++)
                    sum += dPx[dOff + r * GH + gi];
                g[e] = sum;
                return;
            }
        }
        if (e < d.ByOffset)
        {
            int k = (e - d.WyaOffset) / H;
            int i = e - d.WyaOffset - k * H;
            int uTop = (d.Layers - 1) * uStride;
            for (int r = 0; r < rows; r++)
                sum += dy[r * d.V + k] * u[uTop + r * H + i];
        }
        else
        {
            int k = e - d.ByOffset;
            for (int r = 0; r < rows; r++)
                sum += dy[r * d.V + k];
        }
        g[e] = sum;
    }
}
