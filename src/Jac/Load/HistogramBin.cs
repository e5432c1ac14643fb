namespace JacService.Jac.Load;

public sealed record HistogramBin(double FromMs, double ToMs, long Count);
