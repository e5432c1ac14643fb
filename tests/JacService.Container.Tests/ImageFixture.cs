using DotNet.Testcontainers.Builders;
using JacService.Testing;

namespace JacService.Container.Tests;

/// <summary>
/// Builds the real image from the repository's Dockerfile once per test run, under the name docker-compose.yml uses.
/// The image is kept afterwards: the engine's layer cache makes the next build take seconds unless code changed.
/// </summary>
public sealed class ImageFixture : IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        ContainerEngine.EnsureAvailable();
        var image = new ImageFromDockerfileBuilder()
            .WithDockerfileDirectory(Fixtures.Root)
            .WithDockerfile("Dockerfile")
            .WithName(ContainerEngine.ImageName)
            .WithCleanUp(false)
            .WithDeleteIfExists(false)
            .Build();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(20));
        await image.CreateAsync(timeout.Token);
    }

    public Task DisposeAsync() => Task.CompletedTask;
}

[CollectionDefinition(Name)]
public sealed class ImageCollection : ICollectionFixture<ImageFixture>
{
    public const string Name = "image";
}
