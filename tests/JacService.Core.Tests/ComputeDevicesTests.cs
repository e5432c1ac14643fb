using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>Engine:Device's forms, resolved against a given number of visible GPUs, and what each refusal says.</summary>
public class ComputeDevicesTests
{
    [Theory]
    [InlineData("auto", 0, "cpu")]
    [InlineData("", 0, "cpu")]
    [InlineData("AUTO", 2, "cuda:0")]
    [InlineData("cpu", 0, "cpu")]
    [InlineData("cpu", 4, "cpu")]
    [InlineData("cuda", 1, "cuda:0")]
    [InlineData(" cuda:1 ", 2, "cuda:1")]
    [InlineData("cuda:0,cuda:1", 2, "cuda:0|cuda:1")]
    public void EachFormResolves(string setting, int gpus, string expected)
    {
        var (devices, problem) = ComputeDevices.Resolve(setting, gpus);
        Assert.Null(problem);
        Assert.Equal(expected.Split('|'), devices);
    }

    [Theory]
    [InlineData("tpu", 0, "'tpu' is not a device: use cpu, cuda, cuda:N (N from 0), a comma-separated list of them, or auto")]
    [InlineData("cuda:-1", 2, "'cuda:-1' is not a device")]
    [InlineData("cuda:x", 2, "'cuda:x' is not a device")]
    [InlineData("cuda", 0, "'cuda' asks for a GPU, but CUDA is not available to this process: the server runs libtorch for CPU")]
    [InlineData("cuda:2", 2, "'cuda:2' asks for GPU 2, but this process sees 2 (cuda:0 to cuda:1)")]
    [InlineData("cuda:0,cuda", 2, "'cuda:0' is named twice")]
    [InlineData("cpu,cuda:0", 1, "cpu cannot be listed beside GPUs")]
    public void WhatCannotBeServedSaysWhy(string setting, int gpus, string expected)
    {
        var (devices, problem) = ComputeDevices.Resolve(setting, gpus);
        Assert.Empty(devices);
        Assert.NotNull(problem);
        Assert.StartsWith(expected, problem);
    }

    [Fact]
    public void ThisBuildSeesNoGpuSoAutoIsTheCpu()
    {
        Assert.Equal(0, ComputeDevices.CudaDevices());
        Assert.Equal(["cpu"], ComputeDevices.Resolve("auto", ComputeDevices.CudaDevices()).Devices);
    }
}
