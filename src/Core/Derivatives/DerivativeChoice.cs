namespace JacService.Core.Derivatives;

/// <summary>
/// What AUTO chose for one model version, wrt, of and batch size, and why: the measured (or, for the larger side,
/// extrapolated) time of a whole Jacobian in each mode, or a size rule where the engine was told not to time.
/// </summary>
public sealed record DerivativeChoice(string Wrt, string[] Of, long Batch, DerivativeMode Mode,
    double ForwardMicroseconds, double ReverseMicroseconds, bool Timed);
