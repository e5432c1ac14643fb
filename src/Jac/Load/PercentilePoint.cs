namespace JacService.Jac.Load;

public sealed record PercentilePoint(double Percentile, double Ms);
