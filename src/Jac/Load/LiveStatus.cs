namespace JacService.Jac.Load;

/// <summary>Counters of a run in progress, for the progress bar.</summary>
public sealed record LiveStatus(double ElapsedS, double Fraction, long Sent, long Ok, long Errors, double Rps);
