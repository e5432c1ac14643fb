namespace JacService.Jac.Load;

/// <summary>
/// How the load level (requests/s in open loop, busy workers in closed loop) moves from <see cref="From"/> to
/// <see cref="To"/> over <see cref="Seconds"/>: "none" holds <see cref="To"/>, "linear" rises steadily, "step" holds
/// <see cref="Steps"/> equal levels for equal times, the last one at <see cref="To"/>.
/// </summary>
public sealed record Ramp(string Kind, double From, double To, double Seconds, int Steps)
{
    public static Ramp Constant(double level) => new("none", level, level, double.PositiveInfinity, 1);

    public double LevelAt(double t) => Kind switch
    {
        "linear" => From + (To - From) * Math.Clamp(t / Seconds, 0, 1),
        "step" => StepLevel(Math.Min((int)(t / Seconds * Steps), Steps - 1)),
        _ => To,
    };

    private double StepLevel(int i) => Steps == 1 ? To : From + (To - From) * i / (Steps - 1);

    /// <summary>
    /// When the k-th request (from 0) is due, in seconds from the start, for a rate schedule; null once past the
    /// end. Solved from the integral of the rate, so the k-th send is due exactly when k requests were due.
    /// </summary>
    public double? SendTime(long k)
    {
        double t;
        switch (Kind)
        {
            case "linear":
            {
                // N(t) = From·t + a·t², a = (To − From) / (2·Seconds); the positive root of N(t) = k.
                double a = (To - From) / (2 * Seconds);
                t = Math.Abs(a) < 1e-12 ? k / From : (-From + Math.Sqrt(From * From + 4 * a * k)) / (2 * a);
                break;
            }
            case "step":
            {
                double stage = Seconds / Steps, before = 0;
                t = double.PositiveInfinity;
                for (int i = 0; i < Steps; i++)
                {
                    double rate = StepLevel(i), inStage = rate * stage;
                    if (rate > 0 && k < before + inStage) { t = i * stage + (k - before) / rate; break; }
                    before += inStage;
                }
                break;
            }
            default:
                t = k / To;
                break;
        }
        return double.IsFinite(t) && t < Seconds ? t : null;
    }
}
