using JacService.Protos.Inference;
using JacService.Protos.V1;
using JacService.Server.Auth;
using JacService.Server.Quotas;

namespace JacService.Server.Tests;

/// <summary>Every RPC has a group; anonymous access defaults by whether a scheme exists; quota settings are checked.</summary>
public sealed class AuthPlanTests
{
    [Fact]
    public void EveryRpcOfTheContractHasAGroup()
    {
        var expected = new Dictionary<string, RpcGroup>
        {
            ["Predict"] = RpcGroup.Inference, ["Jacobian"] = RpcGroup.Inference, ["BatchJacobian"] = RpcGroup.Inference,
            ["StreamBatchJacobian"] = RpcGroup.Inference, ["JacobianStream"] = RpcGroup.Inference, ["Jvp"] = RpcGroup.Inference, ["Vjp"] = RpcGroup.Inference,
            ["BatchHessian"] = RpcGroup.Inference, ["BatchLaplacian"] = RpcGroup.Inference,
            ["ListModels"] = RpcGroup.Metadata, ["GetModel"] = RpcGroup.Metadata,
        };
        foreach (var method in JacobianService.Descriptor.Methods)
            Assert.Equal(expected[method.Name], RpcGroups.Of($"/{JacobianService.Descriptor.FullName}/{method.Name}"));
        var inference = new Dictionary<string, RpcGroup>
        {
            ["ModelInfer"] = RpcGroup.Inference, ["ModelMetadata"] = RpcGroup.Metadata, ["ModelReady"] = RpcGroup.Metadata,
            ["ServerMetadata"] = RpcGroup.Metadata, ["ServerLive"] = RpcGroup.Health, ["ServerReady"] = RpcGroup.Health,
        };
        foreach (var method in GRPCInferenceService.Descriptor.Methods)
            Assert.Equal(inference[method.Name], RpcGroups.Of($"/{GRPCInferenceService.Descriptor.FullName}/{method.Name}"));
        foreach (var method in ModelControl.Descriptor.Methods)
            Assert.Equal(RpcGroup.Control, RpcGroups.Of($"/{ModelControl.Descriptor.FullName}/{method.Name}"));
        Assert.Equal(RpcGroup.Health, RpcGroups.Of("/grpc.health.v1.Health/Check"));
        Assert.Equal(RpcGroup.Reflection, RpcGroups.Of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
        Assert.Null(RpcGroups.Of("/jacservice.v1.JacobianService/NoSuchMethod"));
        Assert.Null(RpcGroups.Of("/metrics"));
    }

    [Fact]
    public void WithoutASchemeEveryoneIsAnonymous()
    {
        var plan = new AuthPlan(new AuthOptions(), jwt: false);
        Assert.False(plan.AnyScheme);
        Assert.All(Enum.GetValues<RpcGroup>(), g => Assert.True(plan.RuleFor(g).Anonymous));
    }

    [Fact]
    public void WithASchemeOnlyProbesAndReflectionAreAnonymous()
    {
        var plan = new AuthPlan(new AuthOptions(), jwt: true);
        Assert.False(plan.RuleFor(RpcGroup.Inference).Anonymous);
        Assert.False(plan.RuleFor(RpcGroup.Metadata).Anonymous);
        Assert.False(plan.RuleFor(RpcGroup.Control).Anonymous);
        Assert.True(plan.RuleFor(RpcGroup.Health).Anonymous);
        Assert.True(plan.RuleFor(RpcGroup.Reflection).Anonymous);
        Assert.Equal(["jacservice.inference"], plan.RuleFor(RpcGroup.Inference).Scopes);
        Assert.Equal(["jacservice.metadata", "jacservice.inference"], plan.RuleFor(RpcGroup.Metadata).Scopes);
    }

    [Fact]
    public void ConfiguredScopesOrRolesReplaceTheDefaults()
    {
        var options = new AuthOptions
        {
            AllowAnonymous = true,
            Groups = { [RpcGroup.Inference] = new RpcGroupOptions { Roles = ["solver"] }, [RpcGroup.Health] = new RpcGroupOptions { Anonymous = false } },
        };
        var plan = new AuthPlan(options, jwt: true);
        Assert.Empty(plan.RuleFor(RpcGroup.Inference).Scopes);
        Assert.Equal(["solver"], plan.RuleFor(RpcGroup.Inference).Roles);
        Assert.True(plan.RuleFor(RpcGroup.Inference).Anonymous);
        Assert.False(plan.RuleFor(RpcGroup.Health).Anonymous);
    }

    [Fact]
    public void RefusingAnonymousCallersWithNoWayToAuthenticateIsAnError()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new AuthPlan(new AuthOptions { AllowAnonymous = false }, jwt: false));
        Assert.Contains("no authentication scheme is configured", e.Message);
    }

    [Fact]
    public void QuotasNeedALimitAndSaneNumbers()
    {
        var none = new QuotaOptions { Enabled = true };
        Assert.Contains(none.Validate(new(none)), r => r.ErrorMessage!.StartsWith("Quotas:Enabled is true but no limit is set"));
        var bad = new QuotaOptions
        {
            Enabled = true,
            Default = new QuotaLimits { RequestsPerSecond = -1 },
            Principals = { ["p"] = new QuotaLimits { Burst = 5, ConcurrentRequests = 2 } },
        };
        var problems = bad.Validate(new(bad)).Select(r => r.ErrorMessage).ToList();
        Assert.Contains("Quotas:Default:RequestsPerSecond must be 0 (no limit) or more, got -1", problems);
        Assert.Contains("Quotas:Principals:p:Burst needs RequestsPerSecond", problems);
        Assert.Empty(new QuotaOptions().Validate(new(new QuotaOptions())));
    }
}
