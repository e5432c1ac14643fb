using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>
/// When a faster path's result counts as the interpreter's: float32 rounding and a few elements past a kink pass; a
/// result that is something else (scaled, shifted, another shape, NaN where numbers are) does not.
/// </summary>
public class ResultAgreementTests
{
    private static readonly float[] Values = Enumerable.Range(0, 1000).Select(i => MathF.Sin(i) * 3).ToArray();

    private static HostTensor Tensor(float[] data) => new([10, data.Length / 10], data);

    private static string? Disagreement(Func<int, float, float> change) =>
        ResultAgreement.Disagreement(Tensor(Values), Tensor(Values.Select((v, i) => change(i, v)).ToArray()));

    [Fact]
    public void RoundingAndAFewKinksAgree()
    {
        Assert.Null(Disagreement((_, v) => v));
        Assert.Null(Disagreement((i, v) => v * (1 + (i % 2 == 0 ? 1e-6f : -1e-6f))));
        // Elements past a kink (gradient paths that float32 rounds either way): ResNet-101's saliency differs by 4e-3.
        Assert.Null(Disagreement((i, v) => i % 100 == 0 ? v + 0.3f : v));
    }

    [Fact]
    public void AnotherResultDisagrees()
    {
        // 10 % of a root mean square of 3/√2 (2.12), against the larger of the two (2.33); most where |sin| is nearest 1.
        Assert.Matches(@"^differs from the interpreter's by 0\.212 root mean square, 9\.1 % of its scale \(2\.33\); most at element [\d,]+: -?3\.29\d* where the interpreter gives -?2\.99\d*$",
            Disagreement((_, v) => v * 1.1f));
        Assert.NotNull(Disagreement((_, v) => v + 0.3f));
        Assert.NotNull(Disagreement((i, v) => Values[(i + 1) % Values.Length]));
        Assert.NotNull(Disagreement((i, v) => i < 100 ? 0 : v));
    }

    [Fact]
    public void NonFiniteElementsMustMatch()
    {
        var withNan = Values.Select((v, i) => i % 50 == 0 ? float.NaN : v).ToArray();
        Assert.Null(ResultAgreement.Disagreement(Tensor(withNan), Tensor(withNan)));
        Assert.Null(Disagreement((i, v) => i == 7 ? float.PositiveInfinity : v));
        Assert.Equal("has 20 of 1,000 elements finite where the interpreter's are not, or the other way",
            ResultAgreement.Disagreement(Tensor(Values), Tensor(withNan)));
    }

    [Fact]
    public void ResultsThatAreZeroUpToRoundingAgreeAndSmallOnesAreStillCompared()
    {
        var zeros = new float[1000];
        Assert.Null(ResultAgreement.Disagreement(Tensor(zeros), Tensor(zeros.Select((_, i) => i % 3 == 0 ? 1e-10f : 0).ToArray())));
        Assert.NotNull(ResultAgreement.Disagreement(Tensor(zeros), Tensor(zeros.Select(_ => 1e-6f).ToArray())));
        var small = Values.Select(v => v * 1e-7f).ToArray();
        Assert.Null(ResultAgreement.Disagreement(Tensor(small), Tensor(small.Select(v => v * (1 + 1e-5f)).ToArray())));
        Assert.NotNull(ResultAgreement.Disagreement(Tensor(small), Tensor(small.Select(v => v * 1.2f).ToArray())));
    }

    [Fact]
    public void ShapesAndNamesMustMatch()
    {
        Assert.Equal("has shape [100, 10] where the interpreter's has [10, 100]",
            ResultAgreement.Disagreement(Tensor(Values), new HostTensor([100, 10], Values)));
        var y = new Dictionary<string, HostTensor> { ["y"] = Tensor(Values) };
        var z = new Dictionary<string, HostTensor> { ["z"] = Tensor(Values) };
        var none = new Dictionary<string, HostTensor>();
        Assert.Null(ResultAgreement.Disagreement(new EngineResult(y, none), new EngineResult(y, none)));
        Assert.Equal("gives no output 'y'", ResultAgreement.Disagreement(new EngineResult(y, none), new EngineResult(z, none)));
        Assert.Equal("gives a derivative 'z' the interpreter does not", ResultAgreement.Disagreement(new EngineResult(y, none), new EngineResult(y, z)));
        Assert.StartsWith("second derivative 'y' differs", ResultAgreement.Disagreement(
            new EngineResult(y, none) { SecondOrder = y },
            new EngineResult(y, none) { SecondOrder = new Dictionary<string, HostTensor> { ["y"] = Tensor(Values.Select(v => -v).ToArray()) } }));
    }
}
