// A model as a safetensors file: its tensors (F32, row-major; Parameters.NamesOf: Wax, Waa, Wya,
// b, by for the course's model, l{k}.Wax … for deeper ones) and metadata with at least vocab,
// hidden, cell and layers, plus the training options and iteration.
using System.Globalization;
using GpuDinoRnn.Data;
using GpuDinoRnn.Model;

namespace GpuDinoRnn.Checkpoints;

/// <param name="Extra">Tensors of the training state (optimizer moments, carried state), not the model's.</param>
public sealed record LoadedModel(Parameters Parameters, Vocabulary Vocabulary, IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<Tensor> Extra);

public static class Checkpoint
{
    public const string Format = "gpudinornn-1";

    /// <summary>Tensor names of a run's state kept beside the weights: readers of the model skip them.</summary>
    public static readonly string[] StatePrefixes = ["optimizer.", "state."];

    /// <summary>Writes atomically (temporary file, then rename); extra metadata and state tensors are added as given.</summary>
    public static void Save(string path, Parameters parameters, Vocabulary vocabulary, IReadOnlyDictionary<string, string>? extra = null,
        IEnumerable<Tensor>? stateTensors = null)
    {
        var metadata = new Dictionary<string, string>(extra ?? new Dictionary<string, string>())
        {
            ["format"] = Format,
            ["vocab"] = vocabulary.Serialize(),
            ["hidden"] = parameters.Shape.H.ToString(CultureInfo.InvariantCulture),
            ["cell"] = parameters.Shape.CellName,
            ["layers"] = parameters.Shape.Layers.ToString(CultureInfo.InvariantCulture),
        };
        var tensors = Parameters.NamesOf(parameters.Shape).Select(name =>
        {
            var (_, dims) = Parameters.Layout(parameters.Shape, name);
            return new Tensor(name, dims, parameters.Slice(name).ToArray());
        });
        SafeTensors.Write(path, tensors.Concat(stateTensors ?? []), metadata);
    }

    /// <summary>Loads and checks a model; every problem is a UserError that names the file.</summary>
    public static LoadedModel Load(string path) => FromFile(SafeTensors.Read(path), path);

    /// <summary>The model in an already parsed safetensors file; path is only used in messages.</summary>
    public static LoadedModel FromFile(SafeTensorsFile file, string path)
    {
        string Meta(string key) => file.Metadata.TryGetValue(key, out var value)
            ? value
            : throw new UserError($"checkpoint '{path}': metadata \"{key}\" is missing");

        string cellName = Meta("cell");
        var cell = CellNames.Parse(cellName)
            ?? throw new UserError($"checkpoint '{path}' holds a '{cellName}' model; this program knows rnn, gru and lstm");
        // Bounded like --hidden: the sizes below are int products, and a damaged file must not make them wrap.
        if (!int.TryParse(Meta("hidden"), NumberStyles.None, CultureInfo.InvariantCulture, out int h) || h < 1 || h > ModelShape.MaxHidden)
            throw new UserError($"checkpoint '{path}': metadata \"hidden\" is not an integer from 1 to {ModelShape.MaxHidden}");
        int layers = 1; // files from before stacked layers have no "layers"
        if (file.Metadata.TryGetValue("layers", out var layersText)
            && (!int.TryParse(layersText, NumberStyles.None, CultureInfo.InvariantCulture, out layers) || layers < 1 || layers > ModelShape.MaxLayers))
            throw new UserError($"checkpoint '{path}': metadata \"layers\" is not an integer from 1 to {ModelShape.MaxLayers}");
        string vocabText = Meta("vocab"); // outside the try: its error names the file already
        Vocabulary vocab;
        try
        {
            vocab = Vocabulary.Deserialize(vocabText);
        }
        catch (UserError e)
        {
            throw new UserError($"checkpoint '{path}': {e.Message}");
        }
        var shape = new ModelShape(h, vocab.Size, cell, layers);
        var names = Parameters.NamesOf(shape);
        // Every tensor is checked before the weights are allocated: the metadata alone can claim a
        // model of gigabytes, while tensors that are present hold no more floats than the file does.
        var tensors = names.Select(name =>
        {
            var tensor = file.Find(name) ?? throw new UserError($"checkpoint '{path}': tensor {name} is missing");
            var (_, dims) = Parameters.Layout(shape, name);
            if (!tensor.Shape.SequenceEqual(dims))
                throw new UserError($"checkpoint '{path}': tensor {name} has shape [{string.Join(",", tensor.Shape)}], expected [{string.Join(",", dims)}] for a {cellName} model of {layers} layer(s), hidden {h} and a vocabulary of {vocab.Size}");
            if (!tensor.Data.All(float.IsFinite))
                throw new UserError($"checkpoint '{path}': tensor {name} holds NaN or infinite values");
            return tensor;
        }).ToList();
        var parameters = new Parameters(shape);
        foreach (var tensor in tensors)
            tensor.Data.CopyTo(parameters.Slice(tensor.Name));
        var state = file.Tensors.Where(t => StatePrefixes.Any(p => t.Name.StartsWith(p, StringComparison.Ordinal))).ToList();
        var unknown = file.Tensors.Select(t => t.Name).Except(names).Except(state.Select(t => t.Name)).ToList();
        if (unknown.Count > 0)
            throw new UserError($"checkpoint '{path}': unexpected tensor {unknown[0]} for a {cellName} model of {layers} layer(s)");
        return new LoadedModel(parameters, vocab, file.Metadata, state);
    }
}
