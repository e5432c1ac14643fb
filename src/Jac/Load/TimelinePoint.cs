namespace JacService.Jac.Load;

public sealed record TimelinePoint(double TimeS, long Ok, long Errors, double Rps, double P50Ms, double P99Ms);
