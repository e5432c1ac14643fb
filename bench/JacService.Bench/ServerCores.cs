using System.Diagnostics;

/// <summary>
/// JAC_BENCH_SERVER_CPUS (taskset's list syntax, e.g. 0-7): the cores the server under test and the Python peer run
/// on, so that the benchmark process, which is the client, can keep the others (started itself under
/// bench/pinned.py). The 2-core VM has no cores to spare; the GPU machine's 16 do (scripts/device/check.sh,
/// JAC_CHECK_CPU_BARS=1). JAC_BENCH_PYTHON names the peer's Python where it is not Debian's.
/// </summary>
static class ServerCores
{
    public static string Python => Environment.GetEnvironmentVariable("JAC_BENCH_PYTHON") is { Length: > 0 } p ? p : "/usr/bin/python3";

    /// <summary>Makes <paramref name="start"/> run its program through bench/pinned.py on the server's cores, when set.</summary>
    public static ProcessStartInfo Pinned(ProcessStartInfo start, string root)
    {
        if (Environment.GetEnvironmentVariable("JAC_BENCH_SERVER_CPUS") is not { Length: > 0 } cpus) return start;
        string program = start.FileName;
        start.FileName = Python;
        start.ArgumentList.Insert(0, Path.Combine(root, "bench", "pinned.py"));
        start.ArgumentList.Insert(1, cpus);
        start.ArgumentList.Insert(2, program);
        return start;
    }
}
