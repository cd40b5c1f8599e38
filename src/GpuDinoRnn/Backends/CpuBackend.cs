// The laptop fallback: the same training step as the ILGPU kernels, in managed code with SIMD
// vectors (CpuKernels) on one or more threads. Method names mirror the kernels (ForwardStep,
// OutputLayer, BackwardStep, WeightGradients, ClipAndUpdate; the update rules are CpuOptimizer).
//
// How it is fast: only real characters are worked on. A batch's real rows are packed, step by
// step, into R = batch.Chars rows (row start(t) + b for the Active(t) names running at step t).
// Only the two recurrences (ForwardStep, BackwardStep) go step by step; everything else (logits,
// softmax, loss, Wyaᵀ·dy and every weight gradient) is one large matrix product over all rows.
// Matrices are kept in the layout each product streams through, rows padded with zeros to a
// multiple of two vectors (Hp, Vp), with transposed copies refreshed after each update.
//
// Chunks and threads: from B = 16 names on, a batch is cut into K chunks of names with about
// equal characters (K = B / 8 below 32 names, then min(B / 16, 8)), each packed on its own (rows
// chunk by chunk, then step by step) and run start to finish by one thread, whichever asks for
// it next: packing, forward, output layer, backward, and the weight gradients into the chunk's
// own buffer. A thread so works on its own rows only (threads sharing every row ran each phase
// about 40 % slower than the same split on one thread), and one the OS has paused holds up one
// chunk, not a share. With several threads each keeps a replica of everything the update
// writes (weights, gradient, moments, the transposed copies): once every chunk is done, in the
// same phase, each adds up the chunks' gradients and updates its own replica in full, so a
// thread reads only weights it wrote itself. Threads sharing one copy and splitting the update
// took up to a fifth longer a step at H 50, B 32 on a 2-core VM (each step moved the weights
// between the cores and took three more phases); the replicas cost the update once per thread.
// A batch of one chunk (the course) is split phase by phase instead, on replica 0: the
// recurrences split the names, the output layer the rows, the weight gradients the output rows
// and columns, the update runs of the elements. K depends on the batch alone and every output
// element is summed in a fixed order, so results do not depend on the thread count.
using System.Diagnostics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Backends;

public sealed unsafe class CpuBackend : IBackend
{
    // Below this much recurrence work (multiply-adds) per step, one thread beats waking others.
    private const long ParallelWork = 100_000;
    // Names in a chunk: at least 8 (so its steps still fill the kernels' 4-row tiles), 16 from
    // 32 names on (fewer, larger chunks were faster there on one thread); at most 8 chunks.
    private const int SmallChunkNames = 8, ChunkNames = 16, MaxChunks = 8;

    private readonly int _h, _v, _hp, _vp;
    private readonly int _hc;  // columns the products compute over H (CpuKernels.Columns); the rest of _hp stays 0
    private readonly CpuTeam _team;
    private readonly bool _preciseMath;

    // Parameters and gradients, each one padded buffer with the views below (shape: rows × ld),
    // and the copies refreshed after each update: one replica per thread that runs chunks.
    private readonly Replica?[] _replicas;
    private long _updates;                                 // updates applied (Adam's t)
    private float _lastSumSquares;                         // Σ g² of the last step
    private readonly int _waxT, _waaT, _wya, _bias, _by;   // WaxT (V, Hp), WaaT (H, Hp), Wya (V, Hp), b (Hp), by (Vp)

    // Per batch, packed rows: R = batch.Chars of them for one chunk; with K chunks, chunk c's in a
    // region of its own that starts at row c · _chunkStride whatever the batch, so that a thread's
    // rows stay in its own cache from step to step (rows passed between the threads as the
    // chunks' boundaries moved cost about 2 µs a step at H 50, B 32 on 2 threads).
    private PinnedFloats _prev = new(0);  // (rows, Hp) the state each row starts from
    private PinnedFloats _a = new(0);     // (rows, Hp) the state after each row
    private PinnedFloats _dy = new(0);    // (rows, Vp) logits, then dLoss/dlogits
    private PinnedFloats _dz = new(0);    // (rows, Hp) dLoss/dpre-activation
    private double[] _rowLoss = [];       // (rows)
    private int[] _x = [], _y = [];       // (rows) input and target ids
    private int _chunkStride;             // rows in a chunk's region: a multiple of 16 that only grows, 16 more than its rows
    private int[] _active = [], _start = []; // (K × _stepStride) chunk c's names running at step t, its first packed row of step t
    private int _stepStride;              // with several chunks T rounded up to 16, plus 16
    private readonly int[] _chunkName = new int[MaxChunks + 1]; // each chunk's first name (then B)
    private readonly int[] _chunkRow = new int[MaxChunks], _chunkEnd = new int[MaxChunks]; // each chunk's first row, and the row after its last
    private readonly double[] _chunkLoss = new double[MaxChunks * LineDoubles]; // each chunk's loss, summed by its own thread
    private const int LineDoubles = 8, LineInts = 16; // a 64-byte cache line
    private int _chunks;                  // K
    private readonly List<PinnedFloats> _chunkGradients = []; // (K) each chunk's weight gradients
    private readonly int[] _names;        // (threads + 1) a batch of one chunk: each thread's names
    private PinnedFloats _carry;          // (B, Hp) each name's final state of the last step, for CarryState
    private int _carried;                 // names (streams) whose state _carry holds

    // The batch being worked on, for the phases run by the team.
    private Batch _batch = null!;
    private bool _carryIn, _withGradients;
    private float _gradScale;
    private int _members;
    private readonly Action<int> _forwardPhase, _outputPhase, _backwardPhase, _weightPhase, _piecePhase, _chunkPhase;
    private readonly Action<int, int> _chunkPiece, _updatePiece, _copyPiece;
    private OptimizerSettings _update;    // this step's rule, for _updatePiece and UpdateReplica
    private bool _updateInPhase;          // the members update their replicas at the end of the chunk phase
    private int _chunksDone;              // chunks finished (or failed) in this phase
    private bool _chunkFailed;            // a chunk of this phase threw
    // A phase in pieces (chunks, or runs of the buffers) goes to whichever member asks first, so a
    // thread that the OS has paused (another program wants its core) holds up one piece, not its
    // share of the step. Whoever runs a piece, its result is the same.
    private Action<int, int> _piece = (_, _) => { };
    private int _pieces, _next;
    private readonly List<float> _losses = [];

    /// <param name="preciseMath">TensorPrimitives' tanh and exp instead of FastMath's (TrainOptions.PreciseMath).</param>
    public CpuBackend(ModelShape shape, int threads, bool preciseMath = false)
    {
        _preciseMath = preciseMath;
        Shape = shape;
        _h = shape.H;
        _v = shape.V;
        _hp = CpuKernels.Padded(_h);
        _vp = CpuKernels.Padded(_v);
        _hc = CpuKernels.Columns(_h);
        _waxT = 0;
        _waaT = _waxT + _v * _hp;
        _wya = _waaT + _h * _hp;
        _bias = _wya + _v * _hp;
        _by = _bias + _hp;
        _carry = new PinnedFloats(_hp);
        _team = new CpuTeam(threads);
        _replicas = new Replica?[Math.Min(_team.Size, MaxChunks)];
        _replicas[0] = NewReplica();
        _names = new int[_team.Size + 1];
        _forwardPhase = m => ForwardStep(R0, 0, _names[m], _names[m + 1]);
        _outputPhase = m => OutputLayer(R0, RowsOf(m), RowsOf(m + 1));
        _backwardPhase = m => BackwardStep(R0, 0, _names[m], _names[m + 1]);
        _weightPhase = WeightGradients;
        _piecePhase = m =>
        {
            for (int p; (p = Interlocked.Increment(ref _next) - 1) < _pieces;)
                _piece(m, p);
        };
        // Several replicas: each member runs chunks while any are left, then (once every chunk is
        // done) brings its own replica up to date, all in one phase.
        _chunkPhase = m =>
        {
            long start = Stopwatch.GetTimestamp();
            _piecePhase(m);
            if (!_updateInPhase)
                return;
            long worked = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (Volatile.Read(ref _chunksDone) < _chunks)
                spin.SpinOnce(sleep1Threshold: -1);
            if (m == 0) // the caller: a thread the OS paused inside its chunk holds it up here, not at the phase's end
                _team.NoteWait(worked - start, Stopwatch.GetTimestamp() - worked);
            if (!Volatile.Read(ref _chunkFailed)) // no replica takes a gradient that is not whole
                UpdateReplica(m);
        };
        _chunkPiece = RunChunk;
        _updatePiece = (_, p) => UpdateShare(p);
        _copyPiece = (_, p) => RefreshCopies(R0, p, _pieces);
        WarmUp();
    }

    public string Device => $"cpu ({_team.Size} thread{(_team.Size == 1 ? "" : "s")})";
    public int LaunchesPerStep => 0;
    public ModelShape Shape { get; }

    private Replica R0 => _replicas[0]!;
    private float* Q => R0.Q.Ptr;
    private float* G => R0.G.Ptr;

    public void Upload(Parameters parameters)
    {
        Unflatten(parameters.Data, R0.Q);
        RefreshCopies(R0, 0, 1);
        MarkStale();
    }

    public void Download(Parameters parameters)
    {
        fixed (float* p = parameters.Data)
            Flatten(Q, p);
    }

    public void ResetState()
    {
        _carry.Span.Clear();
        _carried = 0;
    }

    public float LastGradientNorm() => MathF.Sqrt(_lastSumSquares);

    public void DownloadGradients(Span<float> gradients)
    {
        fixed (float* g = gradients)
            Flatten(G, g);
    }

    public BackendState SaveState()
    {
        var m = new float[Shape.ParameterCount];
        var v = new float[Shape.ParameterCount];
        fixed (float* pm = m, pv = v)
        {
            Flatten(R0.M1.Ptr, pm);
            Flatten(R0.M2.Ptr, pv);
        }
        var carry = new float[_carried * _h];
        for (int b = 0; b < _carried; b++)
            _carry.Span.Slice(b * _hp, _h).CopyTo(carry.AsSpan(b * _h, _h));
        return new BackendState(_updates, m, v, carry);
    }

    public void LoadState(BackendState state)
    {
        _updates = state.Updates;
        Unflatten(state.M, R0.M1);
        Unflatten(state.V, R0.M2);
        MarkStale();
        _carried = state.Carry.Length / _h;
        EnsureCarry(_carried);
        _carry.Span.Clear();
        for (int b = 0; b < _carried; b++)
            state.Carry.AsSpan(b * _h, _h).CopyTo(_carry.Span.Slice(b * _hp, _h));
    }

    public void Step(Batch batch, StepSettings s)
    {
        _update = s.ForUpdate(_updates + 1);
        double loss = ForwardAndBackward(batch, s.CarryState, update: true);
        _updates++;
        if (_updateInPhase)
            MarkStale(from: _members);
        else
        {
            if (_chunks > 1)
                SumChunkGradients(G);
            _lastSumSquares = CpuKernels.SumOfSquares(G, R0.G.Length);
            if (float.IsFinite((float)loss) && _lastSumSquares <= float.MaxValue)
                ClipAndUpdate();
        }
        // As the device records it: a non-finite gradient reads as a NaN loss; a step whose
        // recorded loss is not finite is not applied.
        float recorded = _lastSumSquares <= float.MaxValue ? (float)loss : float.NaN;
        _losses.Add(recorded);
        if (s.CarryState)
        {
            // Each name's state after its last step (its own row of the packed step Lengths[b] − 1).
            for (int b = 0; b < batch.B; b++)
                new Span<float>(_a.Ptr + (long)RowOf(b, batch.Lengths[b] - 1) * _hp, _hp).CopyTo(_carry.Span.Slice(b * _hp, _hp));
            _carried = batch.B;
        }
    }

    public float[] TakeLosses()
    {
        var result = _losses.ToArray();
        _losses.Clear();
        return result;
    }

    public float Gradients(Batch batch, bool carryState, Span<float> gradients)
    {
        float loss = (float)ForwardAndBackward(batch, carryState, update: false);
        if (_chunks > 1)
            SumChunkGradients(G);
        fixed (float* g = gradients)
            Flatten(G, g);
        return loss;
    }

    public double EvaluateSum(Batch batch)
    {
        Prepare(batch, carryIn: false, withGradients: false);
        _updateInPhase = false;
        if (_chunks > 1)
            RunChunks();
        else
        {
            RunPhase(_forwardPhase);
            RunPhase(_outputPhase);
        }
        return SumLoss();
    }

    public void Dispose() => _team.Dispose();

    /// <summary>
    /// Compiles the whole step now, before any timer starts (as the GPU backends compile their
    /// kernels): one step of a made-up batch on the zero parameters, then everything cleared.
    /// </summary>
    private void WarmUp()
    {
        if (!_preciseMath)
            CpuKernels.CompileSoftmaxLogs();
        var batch = Batch.FromEncoded([[0, 1 % _v, 2 % _v], [1 % _v]]);
        Step(batch, new StepSettings(0.1f, 1f, ClipMode.Value, CarryState: false));
        _update = new StepSettings(0.1f, 1e-30f, ClipMode.Norm, CarryState: false).ForUpdate(2);
        ClipAndUpdate();
        EvaluateSum(batch);
        R0.Q.Span.Clear();
        R0.G.Span.Clear();
        R0.M1.Span.Clear();
        R0.M2.Span.Clear();
        _updates = 0;
        _lastSumSquares = 0;
        _carry.Span.Clear();
        _losses.Clear();
        RefreshCopies(R0, 0, 1);
        MarkStale();
    }

    /// <summary>Room to carry the state of b names; names past the carried ones start from zeros.</summary>
    private void EnsureCarry(int b)
    {
        if (_carry.Length < b * _hp)
        {
            var grown = new PinnedFloats(b * _hp);
            _carry.Span.CopyTo(grown.Span);
            _carry = grown;
        }
        // A slot a smaller batch did not carry still holds an older state.
        if (b > _carried)
            _carry.Span[(_carried * _hp)..(b * _hp)].Clear();
    }

    /// <summary>
    /// Everything up to the gradients (and, with several replicas, the update by _update too
    /// when asked for); returns the mean loss per name.
    /// </summary>
    private double ForwardAndBackward(Batch batch, bool carryState, bool update)
    {
        if (carryState)
            EnsureCarry(batch.B);
        Prepare(batch, carryState, withGradients: true);
        _updateInPhase = update && Replicated;
        if (_chunks > 1)
            RunChunks();
        else
        {
            RunPhase(_forwardPhase);
            RunPhase(_outputPhase);
            RunPhase(_backwardPhase);
            RunPhase(_weightPhase);
        }
        return SumLoss() / batch.B;
    }

    private void RunPhase(Action<int> phase)
    {
        _team.Run(phase, _members);
    }

    private void RunChunks()
    {
        _chunksDone = 0;
        _chunkFailed = false;
        RunPieces(_chunkPiece, _chunks, _chunkPhase);
    }

    private void RunPieces(Action<int, int> piece, int pieces, Action<int>? phase = null)
    {
        _piece = piece;
        _pieces = pieces;
        _next = 0;
        _team.Run(phase ?? _piecePhase, _members);
    }

    /// <summary>Pieces of the element-wise phases: a few to a member, so a paused thread's can be taken over.</summary>
    private int ElementPieces => _members == 1 ? 1 : 4 * _members;

    /// <summary>Packs the batch's real rows and splits the work; allocates only when a batch is larger than any before.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Prepare(Batch batch, bool carryIn, bool withGradients)
    {
        _batch = batch;
        _carryIn = carryIn;
        _withGradients = withGradients;
        _gradScale = 1f / batch.B;
        int rows = batch.Chars, steps = batch.T;
        _chunks = Math.Clamp(batch.B / (batch.B < 2 * ChunkNames ? SmallChunkNames : ChunkNames), 1, MaxChunks);
        // 16 ints (a cache line) at least between two chunks' entries: the arrays are not aligned to lines.
        _stepStride = _chunks == 1 ? steps : RoundUp(steps, LineInts) + LineInts;
        if (_active.Length < _chunks * _stepStride)
        {
            _active = new int[Math.Max(_chunks * _stepStride, _active.Length * 3 / 2)];
            _start = new int[_active.Length];
        }
        // Chunk boundaries: names in order (longest first), each where it is nearest an equal share (R / K) of characters.
        _chunkName[0] = 0;
        int name = 0, chars = 0, largest = 0;
        for (int c = 1; c <= _chunks; c++)
        {
            int first = chars;
            long target = (long)rows * c / _chunks;
            while (c == _chunks ? name < batch.B
                   : name < batch.B - (_chunks - c) && (name == _chunkName[c - 1] || 2 * chars + batch.Lengths[name] <= 2 * target))
                chars += batch.Lengths[name++];
            _chunkName[c] = name;
            _chunkRow[c - 1] = first;
            _chunkEnd[c - 1] = chars;
            largest = Math.Max(largest, chars - first);
        }
        if (_chunks > 1)
        {
            // A region that grows, grows by a quarter, so that batches a little longer do not move every row
            // again; 16 rows at least are left between two chunks' ids and losses (arrays not aligned to lines).
            if (largest + LineInts > _chunkStride)
                _chunkStride = RoundUp(Math.Max(largest + LineInts, _chunkStride * 5 / 4), LineInts);
            for (int c = 0; c < _chunks; c++)
            {
                _chunkEnd[c] += c * _chunkStride - _chunkRow[c];
                _chunkRow[c] = c * _chunkStride;
            }
            rows = _chunks * _chunkStride;
        }
        if (_x.Length < rows)
        {
            int n = Math.Max(rows, _x.Length * 3 / 2);
            _prev = new PinnedFloats(n * _hp);
            _a = new PinnedFloats(n * _hp);
            _dz = new PinnedFloats(n * _hp);
            _dy = new PinnedFloats(n * _vp);
            _rowLoss = new double[n];
            _x = new int[n];
            _y = new int[n];
        }
        while (withGradients && _chunkGradients.Count < _chunks)
            _chunkGradients.Add(new PinnedFloats(R0.G.Length));

        // Threads only when a step's recurrence work is worth waking them for.
        long work = (long)batch.B * _h * _hp;
        int threads = work >= ParallelWork ? Math.Min(_team.Size, batch.B) : 1;
        if (_chunks > 1)
        {
            // Whole chunks to a thread, each taking the next chunk left when it is done with one.
            _members = Math.Min(threads, _chunks);
            if (Replicated)
                SyncReplicas();
            return;
        }
        // One chunk: packed here, then names in contiguous ranges of about equal characters.
        Pack(0);
        _members = threads;
        _names[0] = 0;
        name = 0;
        chars = 0;
        for (int m = 1; m < _members; m++)
        {
            long target = (long)rows * m / _members;
            while (name < batch.B && chars < target)
                chars += batch.Lengths[name++];
            _names[m] = name;
        }
        _names[_members] = batch.B;
    }

    /// <summary>Packs chunk c's rows step by step (its names' characters at t, then at t + 1 …) from its first row on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Pack(int c)
    {
        var batch = _batch;
        int steps = batch.T, b0 = _chunkName[c], row = _chunkRow[c], at = c * _stepStride;
        int active = _chunkName[c + 1] - b0; // names longest first: the count running shrinks as t grows
        for (int t = 0; t < steps; t++)
        {
            while (active > 0 && batch.Lengths[b0 + active - 1] <= t)
                active--;
            _active[at + t] = active;
            _start[at + t] = row;
            for (int b = b0; b < b0 + active; b++, row++)
            {
                _x[row] = batch.X[t * batch.B + b];
                _y[row] = batch.Y[t * batch.B + b];
            }
        }
    }

    /// <summary>Chunk c's rows of the first step when they start from zeros (no carried state): they add nothing to dWaa.</summary>
    private int ZeroStartRows(int c) => _carryIn ? 0 : _active[c * _stepStride];

    /// <summary>Packed row of name b at step t.</summary>
    private int RowOf(int b, int t)
    {
        int c = 0;
        while (b >= _chunkName[c + 1])
            c++;
        return _start[c * _stepStride + t] + b - _chunkName[c];
    }

    /// <summary>Chunk c start to finish on member m's replica, its weight gradients into its own buffer.</summary>
    private void RunChunk(int m, int c)
    {
        try
        {
            var r = Replicated ? _replicas[m]! : R0;
            int b0 = _chunkName[c], b1 = _chunkName[c + 1];
            Pack(c);
            ForwardStep(r, c, b0, b1);
            OutputLayer(r, _chunkRow[c], _chunkEnd[c]);
            // Summed here, so that the other threads read one number of this chunk's, not its rows' losses.
            _chunkLoss[c * LineDoubles] = SumLoss(_chunkRow[c], _chunkEnd[c]);
            if (!_withGradients)
                return;
            BackwardStep(r, c, b0, b1);
            WeightGradients(_chunkGradients[c].Ptr, _chunkRow[c], _chunkEnd[c], ZeroStartRows(c), 0, _h + _v, 0, _hp, 0, _vp);
        }
        catch
        {
            Volatile.Write(ref _chunkFailed, true);
            throw;
        }
        finally
        {
            Interlocked.Increment(ref _chunksDone); // done or failed: nobody waits for it forever
        }
    }

    /// <summary>g = Σ of the chunks' gradients, in chunk order.</summary>
    private void SumChunkGradients(float* g)
    {
        int n = R0.G.Length;
        CpuKernels.Add(_chunkGradients[0].Ptr, _chunkGradients[1].Ptr, g, n);
        for (int c = 2; c < _chunks; c++)
            CpuKernels.Add(g, _chunkGradients[c].Ptr, g, n);
    }

    /// <summary>Member m's replica: the gradient summed from the chunks', clipping and the update, the copies.</summary>
    private void UpdateReplica(int m)
    {
        var r = _replicas[m]!;
        SumChunkGradients(r.G.Ptr);
        float sumSquares = CpuKernels.SumOfSquares(r.G.Ptr, r.G.Length);
        if (m == 0)
            _lastSumSquares = sumSquares;
        // Step's test: every member sums the same losses in the same order, so all agree.
        if (!float.IsFinite((float)(SumLoss() / _batch.B)) || !(sumSquares <= float.MaxValue))
            return;
        CpuOptimizer.Update(r.Q.Span, r.G.Span, r.M1.Span, r.M2.Span, _update, sumSquares);
        RefreshCopies(r, 0, 1);
    }

    /// <summary>Whether each member works on its own replica: several threads on several chunks.</summary>
    private bool Replicated => _chunks > 1 && _members > 1;

    private Replica NewReplica() =>
        new(_by + _vp, CpuKernels.Blocks8(_h) * _hp, CpuKernels.Blocks8(_h) * _vp, _vp); // rows past H: TransposeBlocks' scratch

    /// <summary>Replicas 0 … from − 1 changed alone: the others copy replica 0 before they are used again.</summary>
    private void MarkStale(int from = 1)
    {
        for (int m = from; m < _replicas.Length; m++)
            _replicas[m]?.Stale = true;
    }

    /// <summary>Whether every replica not marked stale holds replica 0's weights, moments and copies, bit for bit (for tests).</summary>
    internal bool ReplicasAgree() =>
        _replicas.Skip(1).All(r => r is null || r.Stale ||
            (r.Q.Span.SequenceEqual(R0.Q.Span) && r.M1.Span.SequenceEqual(R0.M1.Span) && r.M2.Span.SequenceEqual(R0.M2.Span) &&
             r.Waa.Span.SequenceEqual(R0.Waa.Span) && r.WyaT.Span.SequenceEqual(R0.WyaT.Span) && r.ByRow.Span.SequenceEqual(R0.ByRow.Span)));

    /// <summary>Rows in each chunk's region (for tests: it grows with the longest chunk and never moves back).</summary>
    internal int ChunkStride => _chunkStride;

    /// <summary>Each chunk's first row in the last batch (for tests: chunk c's is c · ChunkStride).</summary>
    internal int[] ChunkRows => _chunkRow[.._chunks];

    /// <summary>How many replicas exist (for tests: they are made as threads first need them).</summary>
    internal int Replicas => _replicas.Count(r => r is not null);

    /// <summary>The members' replicas made equal to replica 0 where they are not.</summary>
    private void SyncReplicas()
    {
        for (int m = 1; m < _members; m++)
        {
            if (_replicas[m] is { Stale: false })
                continue;
            var r = _replicas[m] ??= NewReplica();
            R0.Q.Span.CopyTo(r.Q.Span);
            R0.M1.Span.CopyTo(r.M1.Span);
            R0.M2.Span.CopyTo(r.M2.Span);
            RefreshCopies(r, 0, 1);
            r.Stale = false;
        }
    }

    private int RowsOf(int member) => (int)((long)_batch.Chars * member / _members);

    /// <summary>
    /// a_{t+1} = tanh(Wax·x_t + Waa·a_t + b) for names lo ≤ b &lt; hi, step by step; each new state is
    /// also written as the next step's starting state. Finished names simply have no more rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ForwardStep(Replica w, int c, int lo, int hi)
    {
        float* q = w.Q.Ptr;
        int hp = _hp;
        float* prev = _prev.Ptr, a = _a.Ptr;
        // Chunk c's steps, and its names lo … hi − 1 counted from its first.
        int b0 = _chunkName[c];
        var active = _active.AsSpan(c * _stepStride, _batch.T);
        var first = _start.AsSpan(c * _stepStride, _batch.T);
        for (int b = lo; b < hi; b++)
        {
            var start = new Span<float>(prev + (long)(first[0] + b - b0) * hp, hp);
            if (_carryIn)
                _carry.Span.Slice(b * hp, hp).CopyTo(start);
            else
                start.Clear();
        }
        lo -= b0;
        hi -= b0;
        for (int t = 0; t < _batch.T; t++)
        {
            int n = Math.Min(hi, active[t]) - lo;
            if (n <= 0)
                break;
            int r0 = first[t] + lo;
            for (int r = r0; r < r0 + n; r++)
            {
                int x = _x[r];
                float* bias = q + _bias;
                if (x >= 0)
                    CpuKernels.Add(q + _waxT + (long)x * hp, bias, a + (long)r * hp, hp);
                else
                    new Span<float>(bias, hp).CopyTo(new Span<float>(a + (long)r * hp, hp));
            }
            if (t > 0 || _carryIn) // the first step starts from zeros (prev · Waa adds nothing)
                CpuKernels.AddProduct(a + (long)r0 * hp, hp, prev + (long)r0 * hp, hp, q + _waaT, hp, n, _h, _hc);
            var states = new Span<float>(a + (long)r0 * hp, n * hp);
            if (_preciseMath)
            {
                // Row by row over the H real units: TensorPrimitives' tanh(0) is −0, and the padding
                // must stay exactly +0 so that every gradient's padding is 0 too.
                for (int i = 0; i < n; i++)
                    CpuKernels.PreciseTanh(a + (long)(r0 + i) * hp, _h);
            }
            else
                CpuKernels.Tanh(a + (long)r0 * hp, n * hp); // FastMath.Tanh(0) is 0: the padding stays 0
            if (t + 1 < _batch.T)
            {
                int next = Math.Min(hi, active[t + 1]) - lo;
                if (next > 0)
                    states[..(next * hp)].CopyTo(new Span<float>(prev + (long)(first[t + 1] + lo) * hp, next * hp));
            }
        }
    }

    /// <summary>
    /// Rows r0 ≤ r &lt; r1: logits = Wya·a + by, softmax, cross-entropy, dy = (softmax − onehot)/B, and
    /// (for training) the first half of backpropagation, dz = Wyaᵀ·dy, which needs no later step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OutputLayer(Replica w, int r0, int r1)
    {
        int n = r1 - r0;
        if (n <= 0)
            return;
        int vp = _vp, hp = _hp;
        float* logits = _dy.Ptr + (long)r0 * vp;
        for (int i = 0; i < n; i++)
            w.ByRow.Span.CopyTo(new Span<float>(logits + (long)i * vp, vp));
        CpuKernels.AddProduct(logits, vp, _a.Ptr + (long)r0 * hp, hp, w.WyaT.Ptr, vp, n, _h, vp);
        CpuKernels.SoftmaxCrossEntropy(logits, vp, n, _v, _y.AsSpan(r0, n), _rowLoss.AsSpan(r0, n), _gradScale, _withGradients,
            preciseExp: _preciseMath);
        if (!_withGradients)
            return;
        float* dz = _dz.Ptr + (long)r0 * hp;
        new Span<float>(dz, n * hp).Clear();
        CpuKernels.AddProduct(dz, hp, logits, vp, w.Q.Ptr + _wya, hp, n, _v, _hc);
    }

    /// <summary>dz_t = (Wyaᵀ·dy_t + Waaᵀ·dz_{t+1}) ⊙ (1 − a_{t+1}²) for names lo ≤ b &lt; hi, last step first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void BackwardStep(Replica w, int c, int lo, int hi)
    {
        int hp = _hp;
        float* dz = _dz.Ptr, a = _a.Ptr;
        var active = _active.AsSpan(c * _stepStride, _batch.T);
        var first = _start.AsSpan(c * _stepStride, _batch.T);
        lo -= _chunkName[c];
        hi -= _chunkName[c];
        for (int t = _batch.T - 1; t >= 0; t--)
        {
            int n = Math.Min(hi, active[t]) - lo;
            if (n <= 0)
                continue;
            int r0 = first[t] + lo;
            int next = t + 1 < _batch.T ? Math.Min(hi, active[t + 1]) - lo : 0;
            if (next > 0)
                CpuKernels.AddProduct(dz + (long)r0 * hp, hp, dz + (long)(first[t + 1] + lo) * hp, hp, w.Waa.Ptr, hp, next, _h, _hc);
            CpuKernels.MultiplyByTanhDerivative(dz + (long)r0 * hp, a + (long)r0 * hp, n * hp);
        }
    }

    /// <summary>
    /// One chunk's weight gradients split among the members: dWaaᵀ and dWya by output row, dWaxᵀ,
    /// db and dby by column.
    /// </summary>
    private void WeightGradients(int member)
    {
        // Output rows 0 … H−1 are dWaaᵀ's, H … H+V−1 dWya's; each member takes a run of them, in 4-row tiles.
        int total = _h + _v;
        int m0 = (int)((long)total * member / _members + 2) & ~3;
        int m1 = member + 1 == _members ? total : (int)((long)total * (member + 1) / _members + 2) & ~3;
        var (c0, c1) = CpuKernels.VectorShare(member, _members, _hp);
        var (k0, k1) = CpuKernels.VectorShare(member, _members, _vp);
        WeightGradients(G, 0, _batch.Chars, ZeroStartRows(0), m0, m1, c0, c1, k0, k1);
    }

    /// <summary>
    /// Weight gradients into g, summed over rows r0 … r1 − 1 in order: output rows m0 … m1 − 1 of
    /// dWaaᵀ = Σ a_prevᵀ·dz (rows 0 … H − 1; its first zeroRows rows start from zeros and add
    /// nothing) and dWya = Σ dyᵀ·a (rows H … H + V − 1) as products, and columns c0 … c1 − 1 of
    /// dWaxᵀ and db, k0 … k1 − 1 of dby, as sums of rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WeightGradients(float* g, int r0, int r1, int zeroRows, int m0, int m1, int c0, int c1, int k0, int k1)
    {
        int hp = _hp, vp = _vp, rows = r1 - r0;
        int waa0 = Math.Min(m0, _h), waa1 = Math.Min(m1, _h);
        if (waa1 > waa0)
        {
            new Span<float>(g + _waaT + (long)waa0 * hp, (waa1 - waa0) * hp).Clear();
            long from = r0 + zeroRows;
            CpuKernels.AddTransposedProduct(g + _waaT, hp, waa0, waa1, _prev.Ptr + from * hp, hp, _dz.Ptr + from * hp, hp, rows - zeroRows, _hc);
        }
        int wya0 = Math.Max(m0, _h) - _h, wya1 = Math.Max(m1, _h) - _h;
        if (wya1 > wya0)
        {
            new Span<float>(g + _wya + (long)wya0 * hp, (wya1 - wya0) * hp).Clear();
            CpuKernels.AddTransposedProduct(g + _wya, hp, wya0, wya1, _dy.Ptr + (long)r0 * vp, vp, _a.Ptr + (long)r0 * hp, hp, rows, _hc);
        }
        for (int k = 0; k < _v; k++)
            new Span<float>(g + _waxT + (long)k * hp + c0, c1 - c0).Clear();
        new Span<float>(g + _bias + c0, c1 - c0).Clear();
        new Span<float>(g + _by + k0, k1 - k0).Clear();
        for (int r = r0; r < r1; r++)
        {
            float* dz = _dz.Ptr + (long)r * hp + c0;
            if (c1 > c0)
            {
                if (_x[r] >= 0)
                    CpuKernels.Add(g + _waxT + (long)_x[r] * hp + c0, dz, g + _waxT + (long)_x[r] * hp + c0, c1 - c0);
                CpuKernels.Add(g + _bias + c0, dz, g + _bias + c0, c1 - c0);
            }
            if (k1 > k0)
                CpuKernels.Add(g + _by + k0, _dy.Ptr + (long)r * vp + k0, g + _by + k0, k1 - k0);
        }
    }

    /// <summary>
    /// Clipping and the update rule (CpuOptimizer, the twin of the fused kernel) over the whole
    /// padded buffers: the gradient's padding is exactly 0 (see ForwardStep), so it counts in
    /// neither the norm nor an update, and the parameters' padding stays 0. Then the copies.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ClipAndUpdate()
    {
        RunPieces(_updatePiece, ElementPieces);
        RunPieces(_copyPiece, Math.Min(ElementPieces, CpuKernels.Blocks8(_h) / 8));
        MarkStale();
    }

    /// <summary>The optimizer on piece p's run of whole vectors (element by element, so any split gives the same bits).</summary>
    private void UpdateShare(int p)
    {
        var (e0, e1) = CpuKernels.VectorShare(p, _pieces, R0.G.Length);
        CpuOptimizer.Update(R0.Q.Span[e0..e1], R0.G.Span[e0..e1], R0.M1.Span[e0..e1], R0.M2.Span[e0..e1], _update, _lastSumSquares);
    }

    /// <summary>Piece p of `pieces`: its run of 8-column blocks of Waaᵀ and Wya into the copies' rows (piece 0 also by).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RefreshCopies(Replica w, int p, int pieces)
    {
        float* q = w.Q.Ptr;
        int blocks = CpuKernels.Blocks8(_h) / 8;
        int j0 = blocks * p / pieces * 8, j1 = Math.Min(blocks * (p + 1) / pieces * 8, _h);
        if (j1 > j0)
        {
            CpuKernels.TransposeBlocks(q + _waaT + j0, _hp, w.Waa.Ptr + (long)j0 * _hp, _hp, _h, j1 - j0);
            CpuKernels.TransposeBlocks(q + _wya + j0, _hp, w.WyaT.Ptr + (long)j0 * _vp, _vp, _v, j1 - j0);
        }
        if (p == 0)
        {
            w.ByRow.Span.Fill(float.NegativeInfinity);
            new Span<float>(q + _by, _v).CopyTo(w.ByRow.Span);
        }
    }

    /// <summary>The batch's loss: row by row for one chunk, chunk by chunk (each summed row by row) for several.</summary>
    private double SumLoss()
    {
        if (_chunks == 1)
            return SumLoss(0, _batch.Chars);
        double total = 0;
        for (int c = 0; c < _chunks; c++)
            total += _chunkLoss[c * LineDoubles];
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private double SumLoss(int r0, int r1)
    {
        double total = 0;
        for (int r = r0; r < r1; r++)
            total += _rowLoss[r];
        return total;
    }

    private static int RoundUp(int n, int multiple) => (n + multiple - 1) / multiple * multiple;

    /// <summary>A buffer in the flat layout of RnnDims into the padded layout (padding zero).</summary>
    private void Unflatten(float[] flat, PinnedFloats padded)
    {
        var d = Shape.Dims(1, 1);
        padded.Span.Clear();
        float* q = padded.Ptr;
        fixed (float* p = flat)
        {
            CpuKernels.Transpose(p + d.WaxOffset, _v, q + _waxT, _hp, _h, _v);
            CpuKernels.Transpose(p + d.WaaOffset, _h, q + _waaT, _hp, _h, _h);
            for (int k = 0; k < _v; k++)
                new Span<float>(p + d.WyaOffset + k * _h, _h).CopyTo(new Span<float>(q + _wya + k * _hp, _h));
            new Span<float>(p + d.BOffset, _h).CopyTo(new Span<float>(q + _bias, _h));
            new Span<float>(p + d.ByOffset, _v).CopyTo(new Span<float>(q + _by, _v));
        }
    }

    /// <summary>A padded parameter or gradient buffer into the flat layout of RnnDims.</summary>
    private void Flatten(float* src, float* dst)
    {
        var d = Shape.Dims(1, 1);
        CpuKernels.Transpose(src + _waxT, _hp, dst + d.WaxOffset, _v, _v, _h);
        CpuKernels.Transpose(src + _waaT, _hp, dst + d.WaaOffset, _h, _h, _h);
        for (int k = 0; k < _v; k++)
            new Span<float>(src + _wya + k * _hp, _h).CopyTo(new Span<float>(dst + d.WyaOffset + k * _h, _h));
        new Span<float>(src + _bias, _h).CopyTo(new Span<float>(dst + d.BOffset, _h));
        new Span<float>(src + _by, _v).CopyTo(new Span<float>(dst + d.ByOffset, _v));
    }

    /// <summary>What the update writes: the parameters, gradient and moments (padded layout) and the copies.</summary>
    private sealed class Replica(int length, int waa, int wyaT, int vp)
    {
        public PinnedFloats Q { get; } = new(length);
        public PinnedFloats G { get; } = new(length);
        public PinnedFloats M1 { get; } = new(length);  // optimizer moments (m, v)
        public PinnedFloats M2 { get; } = new(length);
        public PinnedFloats Waa { get; } = new(waa);    // Waa (H, Hp)
        public PinnedFloats WyaT { get; } = new(wyaT);  // Wyaᵀ (H, Vp)
        public PinnedFloats ByRow { get; } = new(vp);   // by (Vp), padding −∞ so softmax ignores it
        public bool Stale { get; set; }
    }
}
