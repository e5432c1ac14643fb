using System.Runtime.CompilerServices;
using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>
/// The server lets MKL pick kernels by CPU features before any model loads (Engine:MklIgnoreCpuVendor, on by default),
/// so the engine's numbers in these tests come from the kernels production runs, not the slower fallback.
/// </summary>
internal static class MklDispatchSetup
{
    [ModuleInitializer]
    internal static void Apply() => MklDispatch.IgnoreCpuVendor();
}
