// The file a training run writes its model to, claimed for the whole run: an existing file is
// only replaced with --overwrite, and a lock beside it stops a second run from writing the
// same path at the same time (the lock is an OS file lock, released even if the process dies).
using System.Runtime.InteropServices;

namespace GpuDinoRnn.Checkpoints;

public sealed partial class CheckpointTarget : IDisposable
{
    private readonly FileStream _lock;

    private CheckpointTarget(string path, FileStream lockStream)
    {
        Path = path;
        _lock = lockStream;
    }

    public string Path { get; }

    public static string LockPath(string path) => path + ".lock";

    /// <param name="option">The option that named the path, for messages: --checkpoint, or --resume (which writes back to its file).</param>
    /// <param name="data">The run's data file, which the checkpoint must not replace.</param>
    public static CheckpointTarget Claim(string path, bool overwrite, string option = "--checkpoint", string? data = null)
    {
        if (data is not null && SameFile(path, data))
            throw new UserError($"{option} '{path}' is the --data file '{data}': the checkpoint would replace the names it trains on");
        if (data is not null && SameFile(LockPath(path), data))
            throw new UserError($"{option} '{path}' takes '{LockPath(path)}' as its lock, and that is the --data file '{data}'; choose another --checkpoint");
        // The checkpoint is written to a temporary file and renamed over the path: whatever is
        // there is replaced by a regular file. A link would lose its target, a device or FIFO its kind.
        string? linkTarget;
        try
        {
            linkTarget = new FileInfo(path).LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"cannot write '{path}': {e.Message}", UserError.WriteError);
        }
        if (linkTarget is not null)
            throw new UserError($"{option} '{path}' is a symbolic link (to '{linkTarget}'); name the file it points to");
        if (Directory.Exists(path))
            throw new UserError($"{option} '{path}' is a directory");
        if (File.Exists(path) && SpecialFileKind(path) is { } kind)
            throw new UserError($"{option} '{path}' is {kind}, not a regular file; a checkpoint can only replace a regular file");
        // Checked here, not left to the lock file: .NET's "Could not find a part of the path" names the lock.
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        if (!Directory.Exists(folder))
            throw new UserError($"{option} '{path}': the folder '{folder}' does not exist");
        if (File.Exists(path) && !overwrite)
            throw new UserError($"{option} '{path}' already exists; pass --overwrite to replace it");
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
        RemoveStaleTemporaries(path, data);
        return new CheckpointTarget(path, lockStream);
    }

    /// <summary>
    /// Whether two paths name one file: for two that exist, the same file whatever the links
    /// (hard links too, on Linux); otherwise the same full path.
    /// </summary>
    public static bool SameFile(string a, string b)
    {
        if (string.IsNullOrWhiteSpace(a) || string.IsNullOrWhiteSpace(b))
            return false; // no file at all: whoever opens it says so
        if (OperatingSystem.IsLinux() && Identity(a) is { } x && Identity(b) is { } y)
            return x == y;
        var comparison = OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;
        return string.Equals(Resolved(a), Resolved(b), comparison);
    }

    private static string Resolved(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        try
        {
            return File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return full; // a loop of links, or a folder it may not read: opening it will say so
        }
    }

    /// <summary>A file's device and inode (statx, through links), or null where it is missing.</summary>
    private static (uint Major, uint Minor, ulong Inode)? Identity(string path)
    {
        var statx = new byte[256];
        try
        {
            if (Statx(AtCurrentDirectory, path, 0, StatxType | StatxInode, statx) != 0
                || (MemoryMarshal.Read<uint>(statx) & StatxInode) == 0)
                return null; // missing, or a file system that gives no inode
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
        var s = statx.AsSpan();
        return (MemoryMarshal.Read<uint>(s[StatxDeviceMajorOffset..]), MemoryMarshal.Read<uint>(s[(StatxDeviceMajorOffset + 4)..]),
            MemoryMarshal.Read<ulong>(s[StatxInodeOffset..]));
    }

    /// <summary>
    /// What a path that is there, and neither a directory nor a link, is when it is not a regular
    /// file: "a device", "a FIFO (named pipe)", "a socket"; null for a regular file. .NET does not
    /// tell (FileAttributes calls them all Normal), so Linux's statx is asked; elsewhere null.
    /// With followLinks (reading a checkpoint through a link is fine), a link is its target.
    /// </summary>
    internal static string? SpecialFileKind(string path, bool followLinks = false)
    {
        if (!OperatingSystem.IsLinux())
            return null;
        var statx = new byte[256]; // struct statx: one layout on every Linux architecture
        try
        {
            if (Statx(AtCurrentDirectory, path, followLinks ? 0 : AtSymlinkNoFollow, StatxType, statx) != 0)
                return null; // gone or unreadable: opening it later says why
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null; // a C library without statx (glibc before 2.28, musl before 1.2.5)
        }
        int type = MemoryMarshal.Read<ushort>(statx.AsSpan(StatxModeOffset)) & FileTypeMask;
        return type switch
        {
            RegularFile => null,
            CharacterDevice or BlockDevice => "a device",
            Fifo => "a FIFO (named pipe)",
            Socket => "a socket",
            _ => "not a file",
        };
    }

    private const int AtCurrentDirectory = -100, AtSymlinkNoFollow = 0x100, StatxModeOffset = 28, StatxInodeOffset = 32, StatxDeviceMajorOffset = 136;
    private const uint StatxType = 0x1, StatxInode = 0x100;
    private const int FileTypeMask = 0xF000, Fifo = 0x1000, CharacterDevice = 0x2000, BlockDevice = 0x6000, RegularFile = 0x8000, Socket = 0xC000;

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int directory, string path, int flags, uint mask, [Out] byte[] statx);

    /// <summary>
    /// Temporary files of a run that was killed mid-write (SafeTensors.Write names them PATH.tmp-
    /// and 12 hex digits). Only the holder of the lock writes them, so with the lock held any that
    /// exist are left over; a file of another name, or the data, is not one of them.
    /// </summary>
    private static void RemoveStaleTemporaries(string path, string? data)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        string prefix = System.IO.Path.GetFileName(path) + ".tmp-";
        foreach (var stale in Directory.EnumerateFiles(dir, prefix + "*"))
        {
            string suffix = System.IO.Path.GetFileName(stale)[prefix.Length..];
            if (suffix.Length != 12 || !suffix.All(char.IsAsciiHexDigitLower) || (data is not null && SameFile(stale, data)))
                continue;
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
