using JacService.Core;

namespace JacService.Core.Tests;

public class CallerTextTests
{
    [Theory]
    [InlineData("mlp_tanh", "'mlp_tanh'")]
    [InlineData("", "''")]
    [InlineData("a\nb\u0000c\td", "'a\\u000ab\\u0000c\\u0009d'")]
    [InlineData("ünïcødé 模型", "'ünïcødé 模型'")]
    public void QuotesAndEscapesControlCharacters(string text, string quoted) => Assert.Equal(quoted, CallerText.Quote(text));

    [Fact]
    public void PrintableEscapesOnlyControlCharacters()
    {
        Assert.Equal("unknown input 'a\\u000ainfo: forged'", CallerText.Printable("unknown input 'a\ninfo: forged'"));
        const string plain = "unknown input 'ünï'";
        Assert.Same(plain, CallerText.Printable(plain));
    }

    [Fact]
    public void CutsALongTextAndSaysHowLongItWas()
    {
        Assert.Equal($"'{new string('x', 100)}'", CallerText.Quote(new string('x', 100)));
        Assert.Equal($"'{new string('x', 100)}…' (12,345 characters)", CallerText.Quote(new string('x', 12_345)));
        Assert.Equal(new string('x', 100), CallerText.Clip(new string('x', 12_345)));
        Assert.Equal("short", CallerText.Clip("short"));
    }
}
