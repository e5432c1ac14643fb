using JacService.Core.Ops;
using Mono.Cecil;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>
/// No code here makes a temporary Scalar, read off the compiled code. TorchSharp passes a Scalar's native handle to
/// libtorch without keeping the Scalar alive, so a temporary one can be finalized by a collection on another thread
/// while libtorch reads it (<see cref="Scalars"/>; ScalarLifetimeTests shows it through the engine). That race is
/// rare; a call that sets it up is not, and it shows here by name: an implicit conversion to Scalar (x * 0.5,
/// arange(n)), or a TorchSharp method that makes one inside (Tensor + Tensor passes an alpha of 1, add_(Tensor) too).
/// The tests' own code is read as well: it runs beside the collector in ScalarLifetimeTests.
/// </summary>
public class TemporaryScalarTests
{
    [Fact]
    public void NoCallMakesATemporaryScalar()
    {
        var makers = TorchSharpMethodsThatMakeScalars();
        // A sanity check on the reading itself: TorchSharp's Tensor + Tensor is one of them.
        Assert.Contains(makers, m => m.Contains("Tensor::op_Addition(TorchSharp.torch/Tensor,TorchSharp.torch/Tensor)"));

        var found = new List<string>();
        foreach (var assembly in new[] { typeof(Scalars).Assembly, typeof(TemporaryScalarTests).Assembly })
        {
            using var module = ModuleDefinition.ReadModule(assembly.Location);
            foreach (var method in module.Types.SelectMany(Nested).Where(t => !InScalars(t)).SelectMany(t => t.Methods).Where(m => m.HasBody))
            {
                foreach (var call in method.Body.Instructions.Select(i => i.Operand).OfType<MethodReference>())
                {
                    if (MakesScalar(call) || makers.Contains(call.FullName))
                        found.Add($"{method.DeclaringType.FullName}::{method.Name} calls {call.DeclaringType.Name}::{call.Name}({string.Join(", ", call.Parameters.Select(p => p.ParameterType.Name))})");
                }
            }
        }
        Assert.True(found.Count == 0, "use the cached Scalars (Scalars.S, Scalars.L) and Plus/Minus instead:\n" + string.Join("\n", found.Distinct()));
    }

    /// <summary>The cache itself (its lambdas are nested types) makes the Scalars it keeps.</summary>
    private static bool InScalars(TypeDefinition? t) => t is not null && (t.FullName == typeof(Scalars).FullName || InScalars(t.DeclaringType));

    private static bool MakesScalar(MethodReference m) =>
        m.DeclaringType.FullName == typeof(Scalar).FullName && m.Name == "op_Implicit" ||
        m.DeclaringType.FullName == typeof(ScalarExtensionMethods).FullName && m.Name == nameof(ScalarExtensionMethods.ToScalar);

    /// <summary>TorchSharp's methods that convert to Scalar themselves or call one that does, by full name.</summary>
    private static HashSet<string> TorchSharpMethodsThatMakeScalars()
    {
        using var module = ModuleDefinition.ReadModule(typeof(Scalar).Assembly.Location);
        var methods = module.Types.SelectMany(Nested).SelectMany(t => t.Methods).Where(m => m.HasBody)
            .Select(m => (m.FullName, Calls: m.Body.Instructions.Select(i => i.Operand).OfType<MethodReference>().ToList())).ToList();
        var makers = methods.Where(m => m.Calls.Any(MakesScalar)).Select(m => m.FullName).ToHashSet();
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var (name, calls) in methods)
                if (!makers.Contains(name) && calls.Any(c => makers.Contains(c.FullName)))
                {
                    makers.Add(name);
                    grew = true;
                }
        }
        return makers;
    }

    private static IEnumerable<TypeDefinition> Nested(TypeDefinition t) => t.NestedTypes.SelectMany(Nested).Prepend(t);
}
