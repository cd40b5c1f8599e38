// Draws names from a model on the host (the course's model in float64, any other in float32 as it was trained),
// Each name has its own generator, seeded from (seed, index), so a name does not depend on how
// many were drawn before it or on how the work is split between threads.
using System.Numerics.Tensors;
using GpuDinoRnn.Backends;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Sampling;

/// <param name="Temperature">Divides the logits: below 1 is safer, above 1 wilder.</param>
/// <param name="TopK">Draw only from the K most likely symbols (null: all).</param>
/// <param name="TopP">Draw only from the smallest set of symbols whose probability reaches P (1: all).</param>
/// <param name="Prefix">Every name starts with these symbols; the state is primed with them.</param>
/// <param name="MinLength">The end of name is not drawn before this many symbols (1: no empty names).</param>
/// <param name="MaxLength">Names stop after this many symbols.</param>
public sealed record SampleOptions(
    double Temperature = 1.0, int? TopK = null, double TopP = 1.0, string Prefix = "", int MinLength = 1, int MaxLength = 50)
{
    /// <summary>The lowest temperature: below it the logits overflow float on a GPU (0.001 is all but greedy already).</summary>
    public const double MinTemperature = 1e-3;

    /// <summary>The longest name drawn: a device holds every name of a launch at full length.</summary>
    public const int MaxMaxLength = 100_000;

    public void Validate()
    {
        if (!(Temperature >= MinTemperature) || double.IsInfinity(Temperature))
            throw new UserError($"--temperature must be a number from {MinTemperature} up (got {Temperature})");
        if (TopK < 1)
            throw new UserError($"--top-k must be at least 1 (got {TopK}); leave it out to draw from every symbol");
        if (!(TopP > 0 && TopP <= 1))
            throw new UserError($"--top-p must be in (0, 1] (got {TopP})");
        if (MaxLength is < 1 or > MaxMaxLength)
            throw new UserError($"--max-length must be between 1 and {MaxMaxLength} (got {MaxLength})");
        if (MinLength < 0 || MinLength > MaxLength)
            throw new UserError($"--min-length must be between 0 and --max-length {MaxLength} (got {MinLength})");
        // The end-of-name symbol is '\n': a prefix holding it would end the name inside the prefix.
        if (Prefix.Contains('\n') || Prefix.Contains('\r'))
            throw new UserError("--prefix cannot hold a line end");
        int prefixLength = Vocabulary.TextElements(Prefix).Count();
        if (prefixLength > MaxLength)
            throw new UserError($"--prefix is {prefixLength} symbols long, more than --max-length {MaxLength}");
    }
}

/// <param name="LogProbability">ln P(name and its end) under the model at temperature 1, prefix excluded.</param>
public readonly record struct SampledName(string Name, double LogProbability);

public sealed class Sampler
{
    private readonly double[] _wax, _waa, _wya, _b, _by; // the weights in float64, converted once
    private readonly Vocabulary _vocab;
    private readonly int _h, _v;
    private readonly double[] _a, _aNext, _logits, _probs;
    private readonly int[] _order;
    // Any other model: its float32 weights and every layer's state, stepped with CpuCells.
    private readonly Parameters? _stack;
    private readonly float[] _state = [], _px = [], _pa = [], _act = [], _an = [], _next = [];

    public Sampler(Parameters parameters, Vocabulary vocabulary)
    {
        if (parameters.Shape.V != vocabulary.Size)
            throw new ArgumentException("the vocabulary does not match the model");
        var shape = parameters.Shape;
        if (shape.IsVanilla)
        {
            _wax = ToDouble(parameters.Wax);
            _waa = ToDouble(parameters.Waa);
            _b = ToDouble(parameters.B);
        }
        else
        {
            (_wax, _waa, _b) = ([], [], []);
            _stack = parameters;
            var d = shape.Stack(1, 1);
            (_state, _px, _pa, _act) = (new float[shape.StateSize], new float[d.GH], new float[d.GH], new float[d.GH]);
            (_an, _next) = (new float[d.H], new float[d.StatePerLayer]);
        }
        _wya = ToDouble(parameters.Wya);
        _by = ToDouble(parameters.By);
        _vocab = vocabulary;
        _h = parameters.Shape.H;
        _v = parameters.Shape.V;
        _a = new double[_h];
        _aNext = new double[_h];
        _logits = new double[_v];
        _probs = new double[_v];
        _order = new int[_v];
    }

    /// <summary>Name number <paramref name="index"/> of the stream that <paramref name="seed"/> names.</summary>
    public SampledName Sample(SampleOptions options, int seed, long index)
    {
        var rng = new SplitMix64(((ulong)(uint)seed << 40) ^ (ulong)index);
        return Draw(options, probs => Cumulative(probs, rng.NextDouble()));
    }

    /// <summary>Names index … index+count−1 of a seeded stream, drawn on every core.</summary>
    public static SampledName[] SampleMany(Parameters parameters, Vocabulary vocabulary, SampleOptions options, int seed, long first, int count)
    {
        options.Validate();
        var names = new SampledName[count];
        System.Threading.Tasks.Parallel.For(0, count, () => new Sampler(parameters, vocabulary),
            (n, _, sampler) =>
            {
                names[n] = sampler.Sample(options, seed, first + n);
                return sampler;
            }, _ => { });
        return names;
    }

    /// <summary>
    /// The notebook's sampler, bit for bit: before drawing the c-th symbol it reseeds numpy's
    /// generator with seed + 2c (its counter and seed both advance) and calls np.random.choice.
    /// </summary>
    public string SampleLikeCourse(int seed)
    {
        var np = new NumpyRandom(0);
        int counter = 0;
        return Draw(new SampleOptions(MinLength: 0), probs =>
        {
            np.Seed((uint)(seed + 2 * counter++));
            return np.Choice(probs);
        }).Name;
    }

    /// <summary>
    /// A name as printed: from a model of lower-cased names with its first letter capitalised, as the
    /// course prints them; from one that kept case (or continuous text), as drawn.
    /// </summary>
    public static string Display(string name, bool lowerCased) =>
        name.Length == 0 || !lowerCased ? name : char.ToUpperInvariant(name[0]) + name[1..];

    /// <param name="o">What to draw.</param>
    /// <param name="choose">Picks a symbol from the (filtered) probabilities.</param>
    private SampledName Draw(SampleOptions o, Func<double[], int> choose)
    {
        Array.Clear(_a);
        Array.Clear(_state);
        int x = Batch.Start;
        var ids = new List<int>();
        foreach (int id in o.Prefix.Length == 0 ? [] : _vocab.Encode(o.Prefix))
        {
            Step(x);
            ids.Add(id);
            x = id;
        }
        double logProbability = 0;
        while (true)
        {
            Step(x);
            int length = ids.Count;
            int id = length >= o.MaxLength ? 0 : choose(Probabilities(o, noEnd: length < o.MinLength));
            logProbability += LogSoftmax(id);
            if (id == 0)
                break;
            ids.Add(id);
            x = id;
        }
        return new SampledName(_vocab.Decode(ids), logProbability);
    }

    private static double[] ToDouble(ReadOnlySpan<float> x)
    {
        var d = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
            d[i] = x[i];
        return d;
    }

    /// <summary>a = tanh(Wax·x + Waa·a + b); logits = Wya·a + by (SIMD dot products in float64).</summary>
    private void Step(int x)
    {
        if (_stack is not null)
        {
            StackStep(x);
            return;
        }
        for (int i = 0; i < _h; i++)
        {
            double z = TensorPrimitives.Dot(_waa.AsSpan(i * _h, _h), _a);
            _aNext[i] = Math.Tanh(_b[i] + (x >= 0 ? _wax[i * _v + x] : 0.0) + z);
        }
        _aNext.CopyTo(_a, 0);
        for (int k = 0; k < _v; k++)
            _logits[k] = _by[k] + TensorPrimitives.Dot(_wya.AsSpan(k * _h, _h), _a);
    }

    /// <summary>
    /// One step of every layer, bottom to top, in float32 as the backends train it (CpuCells), with
    /// no dropout; logits = Wya·h_top + by.
    /// </summary>
    private void StackStep(int x)
    {
        var p = _stack!.Data;
        var d = _stack.Shape.Stack(1, 1);
        int h = d.H;
        for (int l = 0; l < d.Layers; l++)
        {
            var state = _state.AsSpan(l * d.StatePerLayer, d.StatePerLayer);
            var below = l == 0 ? default : _state.AsSpan((l - 1) * d.StatePerLayer, h);
            int inputs = d.InputsOf(l);
            for (int g = 0; g < d.GH; g++)
            {
                float px = p[d.BOffset(l) + g];
                if (l == 0 && x >= 0)
                    px += p[d.WaxOffset(0) + g * inputs + x];
                if (l > 0)
                    px += TensorPrimitives.Dot(p.AsSpan(d.WaxOffset(l) + g * inputs, h), below);
                _px[g] = px;
                _pa[g] = TensorPrimitives.Dot(p.AsSpan(d.WaaOffset(l) + g * h, h), state[..h]);
            }
            bool lstm = d.Cell == Kernels.CellKind.Lstm;
            CpuCells.Forward<CpuCells.Precise>(d.Cell, h, h, _px, _pa, state[..h], lstm ? state[h..] : default, _act, _an,
                _next.AsSpan(0, h), lstm ? _next.AsSpan(h) : default);
            _next.CopyTo(state);
        }
        var top = _state.AsSpan((d.Layers - 1) * d.StatePerLayer, h);
        for (int i = 0; i < h; i++)
            _a[i] = top[i];
        for (int k = 0; k < _v; k++)
            _logits[k] = _by[k] + TensorPrimitives.Dot(_wya.AsSpan(k * _h, _h), _a);
    }

    private double LogSoftmax(int k)
    {
        double max = _logits.Max();
        double sum = 0;
        foreach (var z in _logits)
            sum += Math.Exp(z - max);
        return _logits[k] - max - Math.Log(sum);
    }

    /// <summary>
    /// softmax(logits / T) with the end of name masked while the name is too short, then top-k
    /// and top-p filtering (the filtered-out symbols get 0; the rest are not renormalised here,
    /// the pick scales by their total).
    /// </summary>
    private double[] Probabilities(SampleOptions o, bool noEnd)
    {
        double max = double.NegativeInfinity;
        for (int k = 0; k < _v; k++)
            if (!(noEnd && k == 0))
                max = Math.Max(max, _logits[k] / o.Temperature);
        double sum = 0;
        for (int k = 0; k < _v; k++)
        {
            _probs[k] = noEnd && k == 0 ? 0 : Math.Exp(_logits[k] / o.Temperature - max);
            sum += _probs[k];
        }
        for (int k = 0; k < _v; k++)
            _probs[k] /= sum;
        if (o.TopK is not null || o.TopP < 1)
            Filter(o);
        return _probs;
    }

    /// <summary>The first symbol whose cumulative probability exceeds u·total.</summary>
    private static int Cumulative(double[] probs, double u)
    {
        double total = 0;
        foreach (var q in probs)
            total += q;
        double c = 0;
        for (int k = 0; k < probs.Length; k++)
        {
            c += probs[k];
            if (u * total < c)
                return k;
        }
        return Array.FindLastIndex(probs, q => q > 0);
    }

    private void Filter(SampleOptions o)
    {
        for (int k = 0; k < _v; k++)
            _order[k] = k;
        Array.Sort(_order, (a, b) => _probs[b].CompareTo(_probs[a]) is var c && c != 0 ? c : a.CompareTo(b));
        double kept = 0;
        for (int rank = 0; rank < _v; rank++)
        {
            int k = _order[rank];
            bool keep = (o.TopK is null || rank < o.TopK) && (rank == 0 || kept < o.TopP);
            if (keep)
                kept += _probs[k];
            else
                _probs[k] = 0;
        }
    }

    /// <summary>SplitMix64: small, fast, and the same stream on every platform.</summary>
    private struct SplitMix64(ulong state)
    {
        public double NextDouble()
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (z >> 11) * (1.0 / (1UL << 53));
        }
    }
}
