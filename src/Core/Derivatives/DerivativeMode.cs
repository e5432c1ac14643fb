namespace JacService.Core.Derivatives;

/// <summary>How a Jacobian is computed: pushing input directions forward, pulling output directions back, or whichever is faster.</summary>
public enum DerivativeMode
{
    /// <summary>The faster of the two for this model, wrt, of and batch size, as measured when first asked.</summary>
    Auto = 0,
    /// <summary>One tangent direction per input element (jacfwd): cheap for few inputs.</summary>
    Forward = 1,
    /// <summary>One cotangent direction per output element (jacrev): cheap for few outputs.</summary>
    Reverse = 2,
}
