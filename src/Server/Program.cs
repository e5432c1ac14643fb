using JacService.Server.Extensions;

// Settings ship beside the binary; relative paths in them (Models:Root) resolve from the working directory.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.AddJacService();

var app = builder.Build();
app.MapJacService();
app.Run();

/// <summary>Entry point; public so functional tests can start the real server.</summary>
public partial class Program;
