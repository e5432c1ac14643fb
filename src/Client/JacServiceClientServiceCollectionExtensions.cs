using Grpc.Net.ClientFactory;
using JacService.Client;
using JacService.Protos.V1;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

public static class JacServiceClientServiceCollectionExtensions
{
    /// <summary>The name of the gRPC client this registers with Grpc.Net.ClientFactory.</summary>
    public const string ClientName = "JacService";

    /// <summary>
    /// Registers <see cref="JacServiceClient"/> (transient, over a channel from Grpc.Net.ClientFactory) with the
    /// settings of <see cref="JacServiceClientOptions"/>: message limits, deadlines and retries of UNAVAILABLE. The
    /// options are validated when the host starts. Bind them from configuration with
    /// <c>services.AddOptions&lt;JacServiceClientOptions&gt;().BindConfiguration(JacServiceClientOptions.Section)</c>.
    /// Returns the HttpClient builder, for handlers or interceptors of the caller's own.
    /// </summary>
    public static IHttpClientBuilder AddJacServiceClient(this IServiceCollection services, Action<JacServiceClientOptions>? configure = null)
    {
        var options = services.AddOptions<JacServiceClientOptions>();
        if (configure is not null) options.Configure(configure);
        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<JacServiceClientOptions>, JacServiceClientOptionsValidator>());

        static JacServiceClientOptions Settings(IServiceProvider sp) => sp.GetRequiredService<IOptions<JacServiceClientOptions>>().Value;
        services.TryAddTransient(sp => new JacServiceClient(
            sp.GetRequiredService<GrpcClientFactory>().CreateClient<JacobianService.JacobianServiceClient>(ClientName), Settings(sp)));
        return services
            .AddGrpcClient<JacobianService.JacobianServiceClient>(ClientName, (sp, o) => o.Address = Settings(sp).Address)
            .ConfigurePrimaryHttpMessageHandler(sp => JacServiceChannel.CreateHandler(Settings(sp).Tls))
            .ConfigureChannel((sp, channel) => JacServiceChannel.Configure(channel, Settings(sp)));
    }
}
