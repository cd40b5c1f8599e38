// The file a training run writes its model to, claimed for the whole run: an existing file is
// only replaced with --overwrite, and a lock beside it stops a second run from writing the
// same path at the same time (the lock is an OS file lock, released even if the process dies).
namespace GpuDinoRnn.Checkpoints;

public sealed class CheckpointTarget : IDisposable
{
    private readonly FileStream _lock;

    private CheckpointTarget(string path, FileStream lockStream)
    {
        Path = path;
        _lock = lockStream;
    }

    public string Path { get; }

    public static string LockPath(string path) => path + ".lock";

    public static CheckpointTarget Claim(string path, bool overwrite)
    {
        if (Directory.Exists(path))
            throw new UserError($"--checkpoint '{path}' is a directory");
        if (File.Exists(path) && !overwrite)
            throw new UserError($"--checkpoint '{path}' already exists; pass --overwrite to replace it");
        FileStream lockStream;
        try
        {
            lockStream = new FileStream(LockPath(path), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException) when (File.Exists(LockPath(path)))
        {
            throw new UserError($"another run is writing '{path}' (it holds '{LockPath(path)}'); choose another --checkpoint");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"cannot write next to '{path}': {e.Message}", UserError.WriteError);
        }
        RemoveStaleTemporaries(path);
        return new CheckpointTarget(path, lockStream);
    }

    /// <summary>
    /// Temporary files of a run that was killed mid-write. Only the holder of the lock writes
    /// them, so with the lock held any that exist are left over.
    /// </summary>
    private static void RemoveStaleTemporaries(string path)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        foreach (var stale in Directory.EnumerateFiles(dir, System.IO.Path.GetFileName(path) + ".tmp-*"))
        {
            try
            {
                File.Delete(stale);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Harmless if it stays.
            }
        }
    }

    public void Dispose()
    {
        // Delete while still holding the lock, so no other run can have claimed it in between.
        try
        {
            File.Delete(LockPath(Path));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A lock file left behind is harmless: it is only locked while a run holds it.
        }
        _lock.Dispose();
    }
}
