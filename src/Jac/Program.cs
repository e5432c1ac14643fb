using JacService.Jac;

return await JacApp.RunAsync(args, Io.FromConsole());
