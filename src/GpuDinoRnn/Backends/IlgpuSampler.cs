// Names drawn on an ILGPU device (SampleKernels.SampleNames, one thread per name), in launches of
// up to BatchSize names; only the drawn ids come back. The weights are uploaded once.
using GpuDinoRnn.Data;
using GpuDinoRnn.Kernels;
using GpuDinoRnn.Model;
using GpuDinoRnn.Sampling;
using ILGPU;
using ILGPU.Runtime;

namespace GpuDinoRnn.Backends;

public sealed class IlgpuSampler : INameSampler
{
    private readonly Accelerator _acc;
    private readonly DeviceMemory _memory;
    private readonly IDisposable? _ownedContext;
    private readonly Vocabulary _vocab;
    private readonly StackDims _d;
    private readonly int _batchSize;
    private const string Hint = "--batch or --max-length";

    /// <summary>Symbols one launch holds at most (64 MB of ids).</summary>
    internal const int MaxIdsPerLaunch = 1 << 24;
    private readonly int _maxIdsPerLaunch;
    private readonly Action<Index1D, StackDims, ArrayView<float>, SampleSettings, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>> _sample;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _p;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scratch, _logP;
    private MemoryBuffer1D<int, Stride1D.Dense>? _ids, _lengths, _prefix;

    /// <param name="accelerator">The device; disposed with the sampler.</param>
    /// <param name="batchSize">Names per launch (and the scratch memory it needs); the names do not depend on it.</param>
    /// <param name="ownedContext">The ILGPU context to dispose last.</param>
    /// <param name="maxIdsPerLaunch">Symbols a launch may hold (tests make it small).</param>
    public IlgpuSampler(Accelerator accelerator, Parameters parameters, Vocabulary vocabulary, int batchSize, IDisposable? ownedContext = null,
        int maxIdsPerLaunch = MaxIdsPerLaunch)
    {
        _maxIdsPerLaunch = maxIdsPerLaunch;
        if (parameters.Shape.V != vocabulary.Size)
            throw new ArgumentException("the vocabulary does not match the model");
        _acc = accelerator;
        _memory = new DeviceMemory(accelerator);
        _ownedContext = ownedContext;
        _vocab = vocabulary;
        _d = parameters.Shape.Stack(1, 1);
        _batchSize = batchSize;
        _sample = _acc.LoadAutoGroupedStreamKernel<Index1D, StackDims, ArrayView<float>, SampleSettings, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>>(SampleKernels.SampleNames);
        _p = _memory.Allocate<float>(parameters.Data.Length, "model");
        _p.View.CopyFromCPU(parameters.Data);
    }

    public string Device => DeviceMemory.Name(_acc);

    public SampledName[] Sample(SampleOptions options, int seed, long first, int count)
    {
        options.Validate();
        var prefix = _vocab.Encode(options.Prefix);
        var names = new SampledName[count];
        int perLaunch = NamesPerLaunch(Math.Max(options.MaxLength, prefix.Length), _batchSize, _maxIdsPerLaunch); // SampleSettings.Capacity
        for (int done = 0; done < count; done += perLaunch)
        {
            int n = Math.Min(perLaunch, count - done);
            var s = new SampleSettings((float)options.Temperature, options.TopK ?? 0, (float)options.TopP, options.MinLength, options.MaxLength,
                prefix.Length, unchecked((uint)seed), first + done);
            Ensure(n, s.Capacity, prefix);
            _sample(n, _d, _p.View, s, _prefix!.View, _scratch!.View, _ids!.View, _lengths!.View, _logP!.View);
            var ids = new int[n * s.Capacity];
            var lengths = new int[n];
            var logP = new float[n];
            _ids.View.SubView(0, ids.Length).CopyToCPU(ids);
            _lengths.View.SubView(0, n).CopyToCPU(lengths);
            _logP.View.SubView(0, n).CopyToCPU(logP);
            for (int k = 0; k < n; k++)
                names[done + k] = new SampledName(_vocab.Decode(ids.AsSpan(k * s.Capacity, lengths[k]).ToArray()), logP[k]);
        }
        return names;
    }

    /// <summary>Long names take fewer per launch: the kernel indexes a launch's symbols in int.</summary>
    internal static int NamesPerLaunch(int capacity, int batchSize, int maxIds = MaxIdsPerLaunch) => Math.Clamp(maxIds / capacity, 1, batchSize);

    /// <summary>Buffers for n names of up to capacity symbols; the prefix uploaded.</summary>
    private void Ensure(int n, int capacity, int[] prefix)
    {
        if (_lengths is null || _lengths.Length < n || _ids!.Length < (long)n * capacity)
        {
            foreach (var b in new MemoryBuffer?[] { _scratch, _logP, _ids, _lengths })
                b?.Dispose();
            int size = n; // not the last size: a launch of short names then one of long ones would multiply
            _scratch = _memory.Allocate<float>((long)size * SampleKernels.ScratchPerName(_d), Hint);
            _ids = _memory.Allocate<int>((long)size * capacity, Hint);
            _lengths = _memory.Allocate<int>(size, Hint);
            _logP = _memory.Allocate<float>(size, Hint);
        }
        _prefix?.Dispose();
        _prefix = _memory.Allocate<int>(Math.Max(1, prefix.Length), Hint);
        if (prefix.Length > 0)
            _prefix.View.CopyFromCPU(prefix);
    }

    public void Dispose()
    {
        DeviceMemory.Release(_p, _scratch, _logP, _ids, _lengths, _prefix, _acc, _ownedContext);
    }
}
