namespace JacService.Core.Tests;

/// <summary>Tests that count the process's native bytes in use, which any test running beside them would move.</summary>
[CollectionDefinition(nameof(NativeMemoryCollection), DisableParallelization = true)]
public class NativeMemoryCollection;
