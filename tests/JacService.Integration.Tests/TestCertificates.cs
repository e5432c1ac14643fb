using System.Diagnostics;

namespace JacService.Integration.Tests;

/// <summary>
/// Certificates made by openssl in a temporary folder, deleted afterwards (no private key is ever committed): two CAs
/// and certificates each of them issued. ECDSA P-256 keys, valid for two days.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    public string Folder { get; } = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "jacservice-tls-" + Guid.NewGuid().ToString("N")[..8])).FullName;

    /// <summary>A certificate and its key, as PEM files.</summary>
    public sealed record Pem(string Certificate, string Key);

    /// <summary>
    /// The standard set: a CA and another CA; server certificates for 127.0.0.1 and localhost ("server") and for
    /// 127.0.0.1 only ("server-ip", so that https://localhost is a name mismatch); a client certificate of each CA.
    /// </summary>
    public static TestCertificates Standard()
    {
        var certificates = new TestCertificates();
        certificates.Ca("ca");
        certificates.Ca("other-ca");
        certificates.Server("server", "ca");
        certificates.Server("server-ip", "ca", "IP:127.0.0.1");
        certificates.Client("client", "ca");
        certificates.Client("stranger", "other-ca");
        return certificates;
    }

    public string File(string name) => Path.Combine(Folder, name);

    public string CaFile(string ca) => File(ca + ".crt");

    public Pem Get(string name) => new(File(name + ".crt"), File(name + ".key"));

    public Pem Ca(string name)
    {
        Openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", $"/CN=JacService test {name}", "-keyout", File(name + ".key"), "-out", File(name + ".crt"),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        return Get(name);
    }

    /// <summary>A server certificate, by default for 127.0.0.1 and localhost, the names the tests connect to.</summary>
    public Pem Server(string name, string ca, string names = "IP:127.0.0.1,DNS:localhost") => Issue(name, ca, "serverAuth", "subjectAltName=" + names);

    public Pem Client(string name, string ca) => Issue(name, ca, "clientAuth");

    /// <summary>The server certificate and its key as one PKCS#12 file with the given password.</summary>
    public string Pkcs12(string name, string password)
    {
        var pfx = File(name + ".pfx");
        Openssl("pkcs12", "-export", "-in", File(name + ".crt"), "-inkey", File(name + ".key"), "-out", pfx, "-passout", "pass:" + password);
        return pfx;
    }

    private Pem Issue(string name, string ca, string usage, params string[] extensions)
    {
        var extFile = File(name + ".ext");
        System.IO.File.WriteAllLines(extFile, ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature", "extendedKeyUsage=" + usage, .. extensions]);
        Openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", $"/CN={name}",
            "-keyout", File(name + ".key"), "-out", File(name + ".csr"));
        Openssl("x509", "-req", "-in", File(name + ".csr"), "-CA", CaFile(ca), "-CAkey", File(ca + ".key"), "-set_serial", Serial(),
            "-days", "2", "-extfile", extFile, "-out", File(name + ".crt"));
        return Get(name);
    }

    private static string Serial() => "0x" + Convert.ToHexString(Guid.NewGuid().ToByteArray())[..30];

    private static void Openssl(params string[] args)
    {
        var start = new ProcessStartInfo("openssl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(1))) throw new TimeoutException($"openssl {string.Join(' ', args)} did not finish");
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"openssl {string.Join(' ', args)} failed ({process.ExitCode}):\n{stdout.Result}\n{stderr}");
    }

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
