namespace JacService.Server.Models;

/// <summary>One step in a version's history: the state it entered, when, and why (the error, or what caused a reload).</summary>
public sealed record ModelStateChange(DateTimeOffset At, ModelState State, string Note);
