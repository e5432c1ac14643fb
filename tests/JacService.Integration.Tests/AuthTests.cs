using System.Net;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Reflection.V1Alpha;
using JacService.Client;
using JacService.Integration.Tests.Otlp;
using JacService.Integration.Tests.Otlp.Proto;
using JacService.Protos.Inference;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// Authentication and authorisation on the real server: for inference, metadata and control, no credentials, wrong
/// ones, an expired JWT, too few scopes and enough; every inference RPC guarded; health and reflection anonymous; the
/// HTTP answer behind each status; and the caller's name (never the credential) on the request span.
/// </summary>
public sealed class AuthTests(AuthServer fixture) : IClassFixture<AuthServer>
{
    private const string Model = "mlp_tanh";
    private readonly JacobianService.JacobianServiceClient _client = fixture.Server.Client;
    private readonly GRPCInferenceService.GRPCInferenceServiceClient _inference = new(fixture.Server.Channel);

    public static TheoryData<string, string, StatusCode, string> Cases => new()
    {
        { "inference", "none", StatusCode.Unauthenticated, "this call needs credentials: 'authorization: Bearer <JWT>' or 'x-api-key: <key>'" },
        { "inference", "wrong key", StatusCode.Unauthenticated, "the credentials were not accepted: the API key is not one the server accepts" },
        { "inference", "jwt signed by another key", StatusCode.Unauthenticated, "the credentials were not accepted: the bearer token is not signed by a trusted key" },
        { "inference", "expired jwt", StatusCode.Unauthenticated, "the credentials were not accepted: the bearer token has expired" },
        { "inference", "jwt for another audience", StatusCode.Unauthenticated, "the credentials were not accepted: the bearer token is for another audience" },
        { "inference", "not a jwt", StatusCode.Unauthenticated, "the credentials were not accepted: the bearer token is not a well-formed JWT" },
        { "inference", "jwt with metadata scope", StatusCode.PermissionDenied, "'alice' may not call Inference RPCs: they need scope jacservice.inference" },
        { "inference", "reader key", StatusCode.PermissionDenied, "'reader' may not call Inference RPCs: they need scope jacservice.inference" },
        { "inference", "jwt with inference scope", StatusCode.OK, "" },
        { "inference", "pinn-solver key", StatusCode.OK, "" },
        { "metadata", "none", StatusCode.Unauthenticated, "this call needs credentials" },
        { "metadata", "wrong key", StatusCode.Unauthenticated, "the API key is not one the server accepts" },
        { "metadata", "expired jwt", StatusCode.Unauthenticated, "the bearer token has expired" },
        { "metadata", "jwt with control scope", StatusCode.PermissionDenied, "'alice' may not call Metadata RPCs: they need scope jacservice.metadata or jacservice.inference" },
        { "metadata", "operator key", StatusCode.PermissionDenied, "'operator' may not call Metadata RPCs" },
        { "metadata", "jwt with metadata scope", StatusCode.OK, "" },
        { "metadata", "reader key", StatusCode.OK, "" },
        // Who may compute derivatives may read the shapes of what they compute them of.
        { "metadata", "pinn-solver key", StatusCode.OK, "" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task EachGroupAnswersByCredential(string group, string credential, StatusCode expected, string message)
    {
        var headers = Credential(credential);
        Func<Task> call = group == "inference" ? () => Jacobian(headers) : () => ListModels(headers);
        if (expected == StatusCode.OK)
        {
            await call();
            return;
        }
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(expected, e.StatusCode);
        Assert.Contains(message, e.Status.Detail);
    }

    [Fact]
    public async Task EveryInferenceRpcIsGuarded()
    {
        var inference = Credential("jwt with inference scope");
        foreach (var (name, call) in InferenceCalls())
        {
            var none = await Assert.ThrowsAsync<RpcException>(() => call(new Metadata()));
            Assert.True(none.StatusCode == StatusCode.Unauthenticated, $"{name} without credentials: {none.Status}");
            var reader = await Assert.ThrowsAsync<RpcException>(() => call(fixture.ApiKey("reader")));
            Assert.True(reader.StatusCode == StatusCode.PermissionDenied, $"{name} with a metadata-only key: {reader.Status}");
            // Past authorisation the empty request reaches validation.
            var allowed = await Assert.ThrowsAsync<RpcException>(() => call(inference));
            Assert.True(allowed.StatusCode == StatusCode.InvalidArgument, $"{name} with an inference scope: {allowed.Status}");
        }
        var model = await _client.GetModelAsync(new GetModelRequest { Model = Model }, inference);
        Assert.Equal(Model, model.Name);
        var getModel = await Assert.ThrowsAsync<RpcException>(() => _client.GetModelAsync(new GetModelRequest { Model = Model }).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, getModel.StatusCode);

        // The Open Inference Protocol's model metadata and readiness are Metadata RPCs, as GetModel is.
        Assert.Equal(Model, (await _inference.ModelMetadataAsync(new ModelMetadataRequest { Name = Model }, fixture.ApiKey("reader"))).Name);
        Assert.True((await _inference.ModelReadyAsync(new ModelReadyRequest { Name = Model }, fixture.ApiKey("reader"))).Ready);
        var metadata = await Assert.ThrowsAsync<RpcException>(() => _inference.ModelMetadataAsync(new ModelMetadataRequest { Name = Model }).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, metadata.StatusCode);
        var ready = await Assert.ThrowsAsync<RpcException>(() => _inference.ModelReadyAsync(new ModelReadyRequest { Name = Model }).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, ready.StatusCode);
    }

    [Fact]
    public async Task ControlNeedsItsTokenAndAControlPrincipal()
    {
        var control = new ModelControl.ModelControlClient(fixture.Server.Channel);
        var request = new ListRepositoryRequest { Model = Model };
        Metadata With(string? token, string? key)
        {
            var headers = new Metadata();
            if (token is not null) headers.Add("authorization", "Bearer " + token);
            if (key is not null) headers.Add("x-api-key", key);
            return headers;
        }
        async Task<RpcException> Refused(Metadata headers) =>
            await Assert.ThrowsAsync<RpcException>(() => control.ListRepositoryAsync(request, headers).ResponseAsync);

        var listed = await control.ListRepositoryAsync(request, With(fixture.ControlToken, fixture.Keys["operator"]));
        Assert.Equal(Model, Assert.Single(listed.Models).Name);

        // The token alone names nobody: the control principal comes from an API key (a JWT cannot share the authorization header).
        var tokenOnly = await Refused(With(fixture.ControlToken, null));
        Assert.Equal(StatusCode.Unauthenticated, tokenOnly.StatusCode);
        Assert.Contains("this call needs credentials", tokenOnly.Status.Detail);
        var wrongKey = await Refused(With(fixture.ControlToken, "not-a-key"));
        Assert.Equal(StatusCode.Unauthenticated, wrongKey.StatusCode);
        var solver = await Refused(With(fixture.ControlToken, fixture.Keys["pinn-solver"]));
        Assert.Equal(StatusCode.PermissionDenied, solver.StatusCode);
        Assert.Contains("'pinn-solver' may not call Control RPCs: they need scope jacservice.control", solver.Status.Detail);

        // The control policy comes in addition to ModelControl's own token check, which answers as it always did.
        var noToken = await Refused(With(null, fixture.Keys["operator"]));
        Assert.Equal(StatusCode.Unauthenticated, noToken.StatusCode);
        Assert.Contains("ModelControl calls need the metadata 'authorization: Bearer <token>'", noToken.Status.Detail);
        // The interceptor's warning was written inside the request's log scope, which names the caller (JSON console logs show scopes).
        const string scope = "\"enduser.id\":\"operator\"";
        await fixture.Server.WaitForLog(scope);
        var wrongToken = await Refused(With(fixture.Jwts.Mint("alice", [AuthServer.Control]), fixture.Keys["operator"]));
        Assert.Equal(StatusCode.PermissionDenied, wrongToken.StatusCode);
        Assert.Contains("not the server's ModelControl token", wrongToken.Status.Detail);
    }

    [Fact]
    public async Task HealthAndReflectionStayAnonymous()
    {
        var health = await new Health.HealthClient(fixture.Server.Channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        // The Open Inference Protocol's server liveness and readiness are probes too.
        Assert.True((await _inference.ServerLiveAsync(new ServerLiveRequest())).Live);
        Assert.True((await _inference.ServerReadyAsync(new ServerReadyRequest())).Ready);

        using var reflection = new ServerReflection.ServerReflectionClient(fixture.Server.Channel).ServerReflectionInfo();
        await reflection.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await reflection.RequestStream.CompleteAsync();
        Assert.True(await reflection.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Contains("jacservice.v1.JacobianService", reflection.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name));
    }

    /// <summary>
    /// The Open Inference Protocol's REST binding, route by route in the groups of the gRPC methods they stand for: its
    /// refusals are 401 and 403 with the same reasons in the protocol's error body; health stays anonymous.
    /// </summary>
    [Fact]
    public async Task RestRoutesAreGuardedAsTheGrpcMethodsTheyStandFor()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{fixture.Server.RestPort}") };
        async Task<(HttpStatusCode, string)> Send(HttpMethod method, string path, string? key)
        {
            var request = new HttpRequestMessage(method, path);
            if (method == HttpMethod.Post)
                request.Content = new StringContent("""{"inputs": [{"name": "x", "shape": [1, 32], "datatype": "FP32", "data": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}""");
            if (key is not null) request.Headers.Add("x-api-key", fixture.Keys[key]);
            using var response = await http.SendAsync(request);
            string body = await response.Content.ReadAsStringAsync();
            return (response.StatusCode, body.Length == 0 ? "" : System.Text.Json.JsonDocument.Parse(body).RootElement.TryGetProperty("error", out var error) ? error.GetString()! : body);
        }

        string infer = $"/v2/models/{Model}/infer", metadata = $"/v2/models/{Model}";
        Assert.Equal((HttpStatusCode.Unauthorized, "this call needs credentials: 'authorization: Bearer <JWT>' or 'x-api-key: <key>'"),
            await Send(HttpMethod.Post, infer, null));
        Assert.Equal((HttpStatusCode.Forbidden, "'reader' may not call Inference RPCs: they need scope jacservice.inference"),
            await Send(HttpMethod.Post, infer, "reader"));
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Post, infer, "pinn-solver")).Item1);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Send(HttpMethod.Get, metadata, null)).Item1);
        Assert.Equal((HttpStatusCode.Forbidden, "'operator' may not call Metadata RPCs: they need scope jacservice.metadata or jacservice.inference"),
            await Send(HttpMethod.Get, metadata, "operator"));
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, metadata, "reader")).Item1);
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, $"{metadata}/ready", "reader")).Item1);
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, "/v2", "reader")).Item1);
        foreach (var probe in new[] { "/v2/health/live", "/v2/health/ready" })
            Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, probe, null)).Item1);
    }

    /// <summary>What a client that reads only the HTTP status sees: 401 and 403, with the gRPC status beside them.</summary>
    [Fact]
    public async Task RefusalsAreHttp401And403WithTheGrpcStatus()
    {
        using var http = new HttpClient();
        async Task<HttpResponseMessage> Post(string? token)
        {
            // An empty ListModelsRequest: the 5-byte gRPC frame header of a zero-length message.
            var request = new HttpRequestMessage(HttpMethod.Post, $"http://{fixture.Server.Target}/jacservice.v1.JacobianService/ListModels")
            {
                Content = new ByteArrayContent(new byte[5]),
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
            request.Content.Headers.ContentType = new("application/grpc");
            request.Headers.TryAddWithoutValidation("te", "trailers");
            if (token is not null) request.Headers.TryAddWithoutValidation("authorization", "Bearer " + token);
            return await http.SendAsync(request);
        }

        using var none = await Post(null);
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("16", none.Headers.GetValues("grpc-status").Single());
        Assert.Equal("Bearer", none.Headers.WwwAuthenticate.Single().Scheme);

        using var expired = await Post(fixture.Jwts.Mint("alice", [AuthServer.Metadata], expires: DateTime.UtcNow.AddHours(-1)));
        Assert.Equal(HttpStatusCode.Unauthorized, expired.StatusCode);
        Assert.Contains("invalid_token", expired.Headers.WwwAuthenticate.Single().Parameter);

        using var forbidden = await Post(fixture.Jwts.Mint("alice", [AuthServer.Control]));
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        Assert.Equal("7", forbidden.Headers.GetValues("grpc-status").Single());
    }

    [Fact]
    public async Task TheCallerIsNamedOnTheSpanAndTheCredentialIsNot()
    {
        var jwt = fixture.Jwts.Mint("alice", [AuthServer.Inference]);
        await Jacobian(fixture.Bearer(jwt));
        await Jacobian(fixture.ApiKey("pinn-solver"));
        // A refused call of its own, so that the test does not rely on others in the class having made one.
        var refusedCall = await Assert.ThrowsAsync<RpcException>(() => Jacobian([]));
        Assert.Equal(StatusCode.Unauthenticated, refusedCall.StatusCode);

        List<ReceivedSpan> spans = [];
        for (var deadline = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            spans = fixture.Receiver.Spans.Where(s => s.Span.Kind == Span.Types.SpanKind.Server).ToList();
            var named = spans.Select(s => s.Attribute("enduser.id")).ToHashSet();
            if (named.Contains("alice") && named.Contains("pinn-solver") && spans.Any(s => s.Attribute("http.response.status_code") == "401")) break;
        }
        var jacobians = spans.Where(s => s.Attribute("rpc.method") == "jacservice.v1.JacobianService/Jacobian" && s.Attribute("enduser.id") is not null).ToList();
        Assert.Contains(jacobians, s => s.Attribute("enduser.id") == "alice");
        Assert.Contains(jacobians, s => s.Attribute("enduser.id") == "pinn-solver");
        // Calls refused by authentication are not named: nobody was authenticated. They carry the gRPC status all the same.
        var refused = spans.Where(s => s.Attribute("http.response.status_code") == "401").ToList();
        Assert.NotEmpty(refused);
        Assert.All(refused, s => Assert.Null(s.Attribute("enduser.id")));
        // The REST binding's refusals (other tests in the class) are HTTP calls with HTTP statuses.
        var grpc = refused.Where(s => s.Attribute("url.path")?.StartsWith("/v2", StringComparison.Ordinal) != true).ToList();
        Assert.NotEmpty(grpc);
        Assert.All(grpc, s => Assert.Equal("UNAUTHENTICATED", s.Attribute("rpc.response.status_code")));
        Assert.All(grpc, s => Assert.Equal("16", s.Attribute("rpc.grpc.status_code")));
        var values = fixture.Receiver.Spans.SelectMany(s => s.Span.Attributes).Select(a => a.Value.ToString()).ToList();
        Assert.DoesNotContain(values, v => v.Contains(fixture.Keys["pinn-solver"], StringComparison.Ordinal) || v.Contains(jwt, StringComparison.Ordinal));
        Assert.DoesNotContain(fixture.Keys["pinn-solver"], fixture.Server.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheClientLibrarySendsItsTokenOrKey()
    {
        var address = new Uri($"http://{fixture.Server.Target}");
        var byKey = new JacServiceClient(_client, new JacServiceClientOptions { Address = address, ApiKey = fixture.Keys["reader"] });
        Assert.Contains(await byKey.ListModelsAsync(), m => m.Name == Model);
        var byToken = new JacServiceClient(_client, new JacServiceClientOptions { Address = address, BearerToken = fixture.Jwts.Mint("bob", [AuthServer.Metadata]) });
        Assert.Contains(await byToken.ListModelsAsync(), m => m.Name == Model);
        var without = new JacServiceClient(_client, new JacServiceClientOptions { Address = address });
        var e = await Assert.ThrowsAsync<RpcException>(() => without.ListModelsAsync());
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.Equal(["JacServiceClient:ApiKey must be visible ASCII characters without spaces"],
            new JacServiceClientOptions { Address = address, ApiKey = "two words" }.Validate());
    }

    private Metadata Credential(string name) => name switch
    {
        "none" => [],
        "wrong key" => new Metadata { { "x-api-key", "0123456789abcdef0123456789abcdef" } },
        "not a jwt" => fixture.Bearer("0123456789abcdef0123456789abcdef"),
        "jwt signed by another key" => fixture.Bearer(fixture.Jwts.Mint("alice", [AuthServer.Inference, AuthServer.Metadata], key: new byte[32])),
        "expired jwt" => fixture.Bearer(fixture.Jwts.Mint("alice", [AuthServer.Inference, AuthServer.Metadata], expires: DateTime.UtcNow.AddHours(-1))),
        "jwt for another audience" => fixture.Bearer(fixture.Jwts.Mint("alice", [AuthServer.Inference], audience: "someone-else")),
        "jwt with inference scope" => fixture.Bearer(fixture.Jwts.Mint("alice", [AuthServer.Inference])),
        "jwt with metadata scope" => fixture.Bearer(fixture.Jwts.Mint("alice", [AuthServer.Metadata])),
        "jwt with control scope" => fixture.Bearer(fixture.Jwts.Mint("alice", [AuthServer.Control])),
        "pinn-solver key" => fixture.ApiKey("pinn-solver"),
        "reader key" => fixture.ApiKey("reader"),
        "operator key" => fixture.ApiKey("operator"),
        _ => throw new ArgumentException(name),
    };

    private async Task Jacobian(Metadata headers)
    {
        var x = Fixtures.Load(Model).Inputs["x"];
        var response = await _client.JacobianAsync(new JacobianRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(x.Sample(0)) } }, headers);
        Assert.NotEmpty(response.Jacobians);
    }

    private async Task ListModels(Metadata headers)
    {
        var response = await _client.ListModelsAsync(new ListModelsRequest(), headers);
        Assert.Contains(response.Models, m => m.Name == Model);
    }

    private IEnumerable<(string Name, Func<Metadata, Task> Call)> InferenceCalls()
    {
        yield return ("Predict", h => _client.PredictAsync(new PredictRequest { Model = Model }, h).ResponseAsync);
        yield return ("Jacobian", h => _client.JacobianAsync(new JacobianRequest { Model = Model }, h).ResponseAsync);
        yield return ("BatchJacobian", h => _client.BatchJacobianAsync(new BatchJacobianRequest { Model = Model }, h).ResponseAsync);
        yield return ("StreamBatchJacobian", async h =>
        {
            using var stream = _client.StreamBatchJacobian(new BatchJacobianRequest { Model = Model }, h);
            await stream.ResponseStream.MoveNext(CancellationToken.None);
        });
        yield return ("Jvp", h => _client.JvpAsync(new JvpRequest { Model = Model }, h).ResponseAsync);
        yield return ("Vjp", h => _client.VjpAsync(new VjpRequest { Model = Model }, h).ResponseAsync);
        yield return ("BatchHessian", h => _client.BatchHessianAsync(new BatchHessianRequest { Model = Model }, h).ResponseAsync);
        yield return ("inference.GRPCInferenceService/ModelInfer", h => _inference.ModelInferAsync(new ModelInferRequest { ModelName = Model }, h).ResponseAsync);
        yield return ("BatchLaplacian", h => _client.BatchLaplacianAsync(new BatchLaplacianRequest { Model = Model }, h).ResponseAsync);
    }
}
