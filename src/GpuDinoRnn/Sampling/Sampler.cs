// Draws names from a model on the host, in float64, from parameters copied back from the device.
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;
using GpuDinoRnn.Training;

namespace GpuDinoRnn.Sampling;

public sealed class Sampler
{
    private readonly Parameters _p;
    private readonly Vocabulary _vocab;
    private readonly int _h, _v;
    private readonly double[] _a, _aNext, _probs;

    public Sampler(Parameters parameters, Vocabulary vocabulary)
    {
        if (parameters.Shape.V != vocabulary.Size)
            throw new ArgumentException("the vocabulary does not match the model");
        _p = parameters;
        _vocab = vocabulary;
        _h = parameters.Shape.H;
        _v = parameters.Shape.V;
        _a = new double[_h];
        _aNext = new double[_h];
        _probs = new double[_v];
    }

    /// <summary>
    /// One name: from a zero state and the START input, draw each next symbol from
    /// softmax(logits / temperature) until '\n' or maxLength symbols.
    /// </summary>
    public string Sample(Random random, double temperature = 1.0, int maxLength = 50)
    {
        if (!(temperature > 0))
            throw new UserError($"--temperature must be positive (got {temperature})");
        return Draw(maxLength, temperature, (probs, _) => Pick(probs, random.NextDouble()));
    }

    /// <summary>
    /// The notebook's sampler, bit for bit: before drawing the c-th symbol it reseeds numpy's
    /// generator with seed + 2c (its counter and seed both advance) and calls np.random.choice.
    /// </summary>
    public string SampleLikeCourse(int seed)
    {
        var np = new NumpyRandom(0);
        return Draw(50, 1.0, (probs, counter) =>
        {
            np.Seed((uint)(seed + 2 * counter));
            return np.Choice(probs);
        });
    }

    /// <summary>A name with its first letter capitalised, as the course prints them.</summary>
    public static string Display(string name) =>
        name.Length == 0 ? name : char.ToUpperInvariant(name[0]) + name[1..];

    private string Draw(int maxLength, double temperature, Func<double[], int, int> pick)
    {
        Array.Clear(_a);
        int x = Batch.Start;
        var ids = new List<int>();
        for (int counter = 0; counter < maxLength; counter++)
        {
            Step(x, temperature);
            int id = pick(_probs, counter);
            if (id == 0)
                break;
            ids.Add(id);
            x = id;
        }
        return _vocab.Decode(ids);
    }

    /// <summary>a = tanh(Wax·x + Waa·a + b); probs = softmax((Wya·a + by) / temperature).</summary>
    private void Step(int x, double temperature)
    {
        var wax = _p.Wax;
        var waa = _p.Waa;
        var b = _p.B;
        for (int i = 0; i < _h; i++)
        {
            double z = b[i] + (x >= 0 ? wax[i * _v + x] : 0.0);
            for (int j = 0; j < _h; j++)
                z += waa[i * _h + j] * _a[j];
            _aNext[i] = Math.Tanh(z);
        }
        _aNext.CopyTo(_a, 0);
        var wya = _p.Wya;
        var by = _p.By;
        double max = double.NegativeInfinity;
        for (int k = 0; k < _v; k++)
        {
            double z = by[k];
            for (int i = 0; i < _h; i++)
                z += wya[k * _h + i] * _a[i];
            _probs[k] = z / temperature;
            max = Math.Max(max, _probs[k]);
        }
        double sum = 0;
        for (int k = 0; k < _v; k++)
            sum += _probs[k] = Math.Exp(_probs[k] - max);
        for (int k = 0; k < _v; k++)
            _probs[k] /= sum;
    }

    private static int Pick(double[] probs, double u)
    {
        double c = 0;
        for (int k = 0; k < probs.Length; k++)
        {
            c += probs[k];
            if (u < c)
                return k;
        }
        return probs.Length - 1;
    }
}
