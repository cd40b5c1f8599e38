// A bit-exact port of the pieces of numpy's legacy global random state (np.random.seed,
// randn, random_sample, shuffle, choice with p) that the "Dinosaurus Island" course uses.
//
// Why: the course's notebook prints specific losses and sampled names. Those numbers depend on
// the exact random stream (weight initialisation, the data shuffle, and the per-character
// sampling), so reproducing them needs numpy's generator and numpy's algorithms on top of it,
// down to the last bit. Every method here has been checked against real numpy (1.24); the
// test vectors in NumpyRandomTests come from it.
//
// The legacy RandomState is MT19937 (the reference Mersenne Twister) plus numpy's legacy
// distribution code (numpy/random/src/legacy, distributions.c, mtrand.pyx).

namespace GpuDinoRnn.Training;

/// numpy's legacy RandomState (MT19937), bit-exact for the calls the course makes.
public sealed class NumpyRandom
{
    private const int N = 624;
    private const int M = 397;
    private const uint MatrixA = 0x9908b0df;
    private const uint UpperMask = 0x80000000;
    private const uint LowerMask = 0x7fffffff;

    private readonly uint[] _key = new uint[N];
    private int _pos;

    // legacy_gauss produces normals in pairs and keeps the second one for the next call.
    private bool _hasGauss;
    private double _gauss;

    /// np.random.seed(seed).
    public NumpyRandom(uint seed) => Seed(seed);

    /// Re-seeds in place, as np.random.seed(seed); also clears the cached normal.
    /// For an integer seed numpy's _legacy_seeding calls mt19937_seed, which is Knuth's
    /// init_genrand (multiplier 1812433253), not init_by_array (which is what an array seed,
    /// and the reference mt19937ar.c main(), use). So seed 5489 gives std::mt19937's stream.
    public void Seed(uint seed)
    {
        _key[0] = seed;
        for (int i = 1; i < N; i++)
        {
            uint prev = _key[i - 1];
            _key[i] = unchecked((1812433253u * (prev ^ (prev >> 30))) + (uint)i);
        }

        _pos = N; // The first draw regenerates the whole block.
        _hasGauss = false;
        _gauss = 0.0;
    }

    /// One raw 32-bit MT19937 output (tempered).
    public uint NextUInt32()
    {
        if (_pos == N)
        {
            Regenerate();
        }

        uint y = _key[_pos++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680;
        y ^= (y << 15) & 0xefc60000;
        y ^= y >> 18;
        return y;
    }

    /// np.random.random_sample(): a double in [0, 1) with 53 random bits, built from two
    /// outputs: the top 27 bits of the first and the top 26 bits of the second.
    public double RandomSample()
    {
        uint a = NextUInt32() >> 5;
        uint b = NextUInt32() >> 6;
        return ((a * 67108864.0) + b) / 9007199254740992.0;
    }

    /// np.random.randn(): one standard normal (numpy's legacy_gauss, Marsaglia's polar method).
    public double StandardNormal()
    {
        if (_hasGauss)
        {
            _hasGauss = false;
            double cached = _gauss;
            _gauss = 0.0;
            return cached;
        }

        double x1, x2, r2;
        do
        {
            x1 = (2.0 * RandomSample()) - 1.0;
            x2 = (2.0 * RandomSample()) - 1.0;
            r2 = (x1 * x1) + (x2 * x2);
        }
        while (r2 >= 1.0 || r2 == 0.0);

        // Evaluated exactly as numpy's C: (-2.0 * log(r2)) / r2, then sqrt. Note the order:
        // numpy returns f * x2 now and caches f * x1 for the next call.
        double f = Math.Sqrt(-2.0 * Math.Log(r2) / r2);
        _gauss = f * x1;
        _hasGauss = true;
        return f * x2;
    }

    /// np.random.randn(rows, cols).ravel(): fills in row-major order, one normal at a time,
    /// so an odd-sized call leaves a cached value for the next one, just as numpy does.
    public void Randn(Span<double> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = StandardNormal();
        }
    }

    /// np.random.shuffle(list): Fisher-Yates from the end; for i = n-1 down to 1 swap element i
    /// with element random_interval(i), an index in [0, i].
    public void Shuffle<T>(IList<T> list)
    {
        ArgumentNullException.ThrowIfNull(list);
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = (int)RandomInterval((uint)i);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }

    /// np.random.choice(len(p), p=p) with size=None: the legacy inverse-CDF draw
    /// cdf = p.cumsum(); cdf /= cdf[-1]; idx = cdf.searchsorted(random_sample(), side='right').
    /// Consumes exactly one random_sample (two 32-bit outputs).
    /// numpy also rejects p whose sum is off 1 by more than sqrt(eps) (about 1.5e-8); that check
    /// is not repeated here (the division by the total makes any positive total usable), but p
    /// must, as in numpy, be non-empty with every entry in [0, 1] and a positive total.
    public int Choice(ReadOnlySpan<double> p)
    {
        if (p.IsEmpty)
        {
            throw new ArgumentException("p must not be empty.", nameof(p));
        }

        // cumsum is a plain left-to-right running sum in float64 (not pairwise).
        var cdf = new double[p.Length];
        double running = 0.0;
        for (int i = 0; i < p.Length; i++)
        {
            if (!(p[i] >= 0.0 && p[i] <= 1.0))
            {
                throw new ArgumentException($"p[{i}] = {p[i]} is not a probability.", nameof(p));
            }

            running += p[i];
            cdf[i] = running;
        }

        if (running <= 0.0)
        {
            throw new ArgumentException("p must have a positive total.", nameof(p));
        }

        for (int i = 0; i < cdf.Length; i++)
        {
            cdf[i] /= running;
        }

        // searchsorted(side='right') on a sorted array: the first index whose cdf exceeds u.
        // cdf[^1] is exactly 1.0 and u < 1, so an index is always found.
        double u = RandomSample();
        int idx = 0;
        while (cdf[idx] <= u)
        {
            idx++;
        }

        return idx;
    }

    /// numpy's random_interval(max) for max < 2^32: a uniform integer in [0, max] by masking
    /// 32-bit outputs down to the smallest all-ones mask covering max and rejecting values above it.
    private uint RandomInterval(uint max)
    {
        if (max == 0)
        {
            return 0;
        }

        uint mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;

        uint value;
        do
        {
            value = NextUInt32() & mask;
        }
        while (value > max);

        return value;
    }

    private void Regenerate()
    {
        uint y;
        int i;
        for (i = 0; i < N - M; i++)
        {
            y = (_key[i] & UpperMask) | (_key[i + 1] & LowerMask);
            _key[i] = _key[i + M] ^ (y >> 1) ^ Mag(y);
        }

        for (; i < N - 1; i++)
        {
            y = (_key[i] & UpperMask) | (_key[i + 1] & LowerMask);
            _key[i] = _key[i + (M - N)] ^ (y >> 1) ^ Mag(y);
        }

        y = (_key[N - 1] & UpperMask) | (_key[0] & LowerMask);
        _key[N - 1] = _key[M - 1] ^ (y >> 1) ^ Mag(y);
        _pos = 0;
    }

    private static uint Mag(uint y) => (y & 1) != 0 ? MatrixA : 0u;
}
