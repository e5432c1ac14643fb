namespace JacService.Fuzz.Tests;

/// <summary>
/// The seed corpora through the harnesses in-process, without afl-fuzz: no finding, and the valid inputs really served,
/// so the fuzzing starts from inputs that reach the engine and the batcher rather than bouncing off validation.
/// </summary>
public sealed class SeedCorpusTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "jacservice-seeds-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void EveryFixtureModelSeedLoadsAndServesAndTheBadOnesAreRefused()
    {
        var harness = new ModelHarness();
        harness.WriteSeeds(_dir);
        var outcomes = Directory.GetFiles(_dir).Order().ToDictionary(f => Path.GetFileNameWithoutExtension(f), f => harness.Run(File.ReadAllBytes(f)));

        Assert.Contains("pinn", outcomes.Keys);
        Assert.Contains("two_inputs", outcomes.Keys);
        Assert.Contains("functions_layernorm_gelu", outcomes.Keys);
        Assert.Contains("seeds_control_flow", outcomes.Keys);
        Assert.StartsWith("refused: unsupported op: Det", outcomes["unsupported_op"]);
        Assert.StartsWith("refused: node 'add_missing' (Add) consumes 'missing_tensor'", outcomes["invalid_graph"]);
        Assert.StartsWith("loaded; request refused (NodeEvaluationException): node 'reshape_to_one_sample'", outcomes["batch_one_only"]);
        foreach (var (name, outcome) in outcomes.Where(p => p.Key is not ("unsupported_op" or "invalid_graph" or "batch_one_only")))
            Assert.True(outcome == "loaded; served", $"{name}: {outcome}");
    }

    [Fact]
    public void EveryRequestSeedIsAnsweredAndOnlyTheOversizedHessianIsRefused()
    {
        using var harness = new RequestHarness();
        harness.WriteSeeds(_dir);
        var outcomes = Directory.GetFiles(_dir).Order().ToDictionary(f => Path.GetFileNameWithoutExtension(f), f => harness.Run(File.ReadAllBytes(f)));

        // Every method (ModelInfer as a Predict, a Jacobian and a Laplacian; the REST binding's infer, in JSON and binary), on every fixture model, alone and (for some)
        // as two copies that share batches.
        Assert.Equal(11, outcomes.Keys.Select(k => k.Split('-')[1].Split('.')[0]).Distinct().Count());
        Assert.Contains("pinn-ModelInfer.jacobian-x1", outcomes.Keys);
        Assert.Contains("pinn-RestInfer.jacobian-x1", outcomes.Keys);
        Assert.Contains("pinn-RestInfer.jacobian-binary-x1", outcomes.Keys);
        Assert.Contains("mlp_tanh-BatchJacobian-x2", outcomes.Keys);
        Assert.StartsWith("BatchHessianRequest: ResourceExhausted: the Hessian result would take", outcomes["small_cnn-BatchHessian-x1"]);
        // A stream of a good message, one naming no such input, and the good one again: two answered, one refused.
        foreach (var (name, outcome) in outcomes.Where(p => p.Key.Contains("-JacobianStream-")))
            Assert.Equal("JacobianStream: 3 messages, 2 OK, 1 copies", outcome);
        foreach (var (name, outcome) in outcomes.Where(p => p.Key != "small_cnn-BatchHessian-x1" && !p.Key.Contains("-JacobianStream-")))
            Assert.True(outcome.Contains(": OK, "), $"{name}: {outcome}");
    }
}
