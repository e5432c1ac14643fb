using JacService.Fuzz;
using SharpFuzz;
using TorchSharp;

// JacService.Fuzz <model|model-ort|request> [fuzz | replay FILE-OR-DIR... | seeds DIR]
//   fuzz (the default): run under afl-fuzz (scripts/fuzz.sh), the harness in SharpFuzz's out-of-process fork server,
//     so that a native abort or a timeout ends one child process and the fuzzing goes on.
//   replay: run each input once and print its outcome; exit code 1 if any input is a finding.
//   seeds: write the harness's seed corpus.
if (args.Length < 1 || !Harnesses.Names.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: JacService.Fuzz <{string.Join("|", Harnesses.Names)}> [fuzz | replay FILE-OR-DIR... | seeds DIR]");
    return 2;
}

// One intra-op thread: afl-fuzz runs one input at a time, and the machine's other cores belong to others.
torch.set_num_threads(1);
string command = args.Length > 1 ? args[1] : "fuzz";
if (command != "fuzz") TraceBitmap.EnsureMapped();
if (command == "fuzz")
{
    // Made in the child that runs the inputs, on its first input: the parent only talks to afl-fuzz, and has no
    // trace bitmap for the instrumented code that loading the fixture models runs.
    HarnessHandle? fuzzed = null;
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        fuzzed ??= Harnesses.Create(args[0]);
        fuzzed.Run(memory.ToArray());
    });
    return 0;
}

using var harness = Harnesses.Create(args[0]);
switch (command)
{
    case "replay":
        int findings = 0;
        foreach (var file in args.Skip(2).SelectMany(p => Directory.Exists(p) ? Directory.GetFiles(p).Order().ToArray() : [p]))
        {
            // The time each input took: a hang afl reports may replay as an outcome that is only slow.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                string outcome = harness.Run(File.ReadAllBytes(file));
                Console.WriteLine($"{Path.GetFileName(file)}: {outcome} ({clock.Elapsed.TotalSeconds:0.00} s)");
            }
            catch (Exception e)
            {
                findings++;
                Console.WriteLine($"{Path.GetFileName(file)}: FINDING after {clock.Elapsed.TotalSeconds:0.00} s: {e}");
            }
        }
        return findings == 0 ? 0 : 1;
    case "seeds" when args.Length == 3:
        harness.WriteSeeds(args[2]);
        return 0;
    default:
        Console.Error.WriteLine($"unknown command '{args[1]}'");
        return 2;
}
