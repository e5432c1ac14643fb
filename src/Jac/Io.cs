using Spectre.Console;

namespace JacService.Jac;

/// <summary>Where jac writes: data and summaries to <see cref="Out"/>, progress and errors to <see cref="Err"/>.</summary>
public sealed record Io(TextWriter Out, TextWriter Err, bool OutIsTerminal = false, bool ErrIsTerminal = false)
{
    public static Io FromConsole() => new(Console.Out, Console.Error, !Console.IsOutputRedirected, !Console.IsErrorRedirected);

    public IAnsiConsole OutConsole => Create(Out, OutIsTerminal);
    public IAnsiConsole ErrConsole => Create(Err, ErrIsTerminal);

    private static IAnsiConsole Create(TextWriter writer, bool terminal)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        // Spectre assumes 80 columns when output goes to a file or pipe, which wraps tables mid-word.
        if (!terminal) console.Profile.Width = 160;
        return console;
    }
}
