namespace JacService.Server.Models;

/// <summary>Where a model version stands; ListModels and GetModel report the names upper-cased.</summary>
public enum ModelState
{
    Loading,
    Ready,
    Failed,
}
