// Where names are drawn: on the host (Sampler, every core) or on an ILGPU device (IlgpuSampler,
// a thread per name). Either way name i of a seed's stream does not depend on how many names are
// drawn at once.
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Sampling;

public interface INameSampler : IDisposable
{
    /// <summary>Where the names are drawn, for messages (e.g. "cpu", "cuda (NVIDIA H200)").</summary>
    string Device { get; }

    /// <summary>Names first … first+count−1 of the stream that seed names.</summary>
    SampledName[] Sample(SampleOptions options, int seed, long first, int count);
}

/// <summary>The host sampler on every core.</summary>
public sealed class HostNameSampler(Parameters parameters, Vocabulary vocabulary) : INameSampler
{
    public string Device => "cpu";

    public SampledName[] Sample(SampleOptions options, int seed, long first, int count) =>
        Sampler.SampleMany(parameters, vocabulary, options, seed, first, count);

    public void Dispose()
    {
    }
}
