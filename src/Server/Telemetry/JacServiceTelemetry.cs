using System.Diagnostics;

namespace JacService.Server.Telemetry;

/// <summary>
/// The names dashboards, alerts and trace queries rely on: the ActivitySource and Meter "JacService", span names
/// and attribute keys. Renaming any of them breaks someone's dashboard.
/// </summary>
public static class JacServiceTelemetry
{
    public const string Name = "JacService";

    public static readonly ActivitySource Source = new(Name, typeof(JacServiceTelemetry).Assembly.GetName().Version?.ToString());

    /// <summary>The time one request waited in its model's queue, a child of the request's server span.</summary>
    public const string QueueSpan = "jacservice.queue";

    /// <summary>One executed batch, a root span linked to the server span of every request it served.</summary>
    public const string BatchSpan = "jacservice.batch";

    /// <summary>One message of a JacobianStream, a child of the stream's server span; its queue span is its child.</summary>
    public const string StreamMessageSpan = "jacservice.stream.message";

    public static class Attributes
    {
        public const string Model = "jacservice.model";
        public const string Version = "jacservice.model.version";
        public const string Kind = "jacservice.kind";
        public const string Rows = "jacservice.request.rows";
        /// <summary>A JacobianStream message's place in its stream, from 0.</summary>
        public const string StreamSequence = "jacservice.stream.sequence";
        public const string BatchSize = "jacservice.batch.size";
        public const string Bucket = "jacservice.batch.bucket";
        public const string PaddedRows = "jacservice.batch.padded_rows";
        public const string Requests = "jacservice.batch.requests";
        public const string TangentWidth = "jacservice.tangent_width";
        /// <summary>Laplacian batches: how many elements of wrt the second derivatives are summed over.</summary>
        public const string LaplacianAxes = "jacservice.laplacian.axes";
        /// <summary>Hessian and Laplacian batches: whether the Jacobians were computed too.</summary>
        public const string IncludeJacobian = "jacservice.include_jacobian";
        public const string Device = "jacservice.device";
        /// <summary>The derivative mode a batch ran in: forward or reverse (never auto); absent for predict.</summary>
        public const string Mode = "jacservice.mode";
        /// <summary>Derivative batches: whether a compiled derivative graph computed them (Engine:CompileDerivatives) or the interpreter.</summary>
        public const string Compiled = "jacservice.compiled";
    }
}
