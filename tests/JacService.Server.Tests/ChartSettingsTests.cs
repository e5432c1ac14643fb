using System.Reflection;
using System.Text.Json;
using JacService.Server.Execution;
using JacService.Testing;

namespace JacService.Server.Tests;

/// <summary>
/// Each section the Helm chart passes through as settings (values `config`) is validated by the chart's schema, which
/// refuses properties it does not list. So every setting of the section's options class must be listed, or an operator
/// cannot set it through the chart at all, and every listed property must be a setting, or its value would be ignored.
/// Before this test, Limits:MaxStreamRequestsInFlight, Limits:MaxConfigBytes and five Engine settings (Engine:Device,
/// which the chart's own template reads, among them) were refused by the schema.
/// </summary>
public class ChartSettingsTests
{
    // Set by the chart from its own values (models.*), not under config.
    private static readonly HashSet<string> SetByTheChart = ["Models:Root"];

    [Fact]
    public void TheSchemaListsEverySettingOfEachSectionAndNothingElse()
    {
        using var schema = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "deploy", "helm", "jacservice", "values.schema.json")));
        var sections = schema.RootElement.GetProperty("properties").GetProperty("config").GetProperty("properties");
        var optionsBySection = typeof(LimitsOptions).Assembly.GetTypes()
            .Select(t => (Type: t, Section: t.GetField("Section", BindingFlags.Public | BindingFlags.Static)?.GetRawConstantValue() as string))
            .Where(t => t.Section is not null)
            .ToDictionary(t => t.Section!, t => t.Type);

        var checkedSections = new List<string>();
        foreach (var section in sections.EnumerateObject())
        {
            if (!optionsBySection.TryGetValue(section.Name, out var options)) continue; // Kestrel's, which Kestrel defines
            var settings = options.GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .Where(p => p.CanWrite && p.SetMethod!.IsPublic)
                .Select(p => p.Name)
                .Where(name => !SetByTheChart.Contains($"{section.Name}:{name}"))
                .Order();
            var listed = section.Value.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order();
            Assert.Equal(settings.Select(n => $"{section.Name}:{n}"), listed.Select(n => $"{section.Name}:{n}"));
            checkedSections.Add(section.Name);
        }
        Assert.Equal(["Batching", "CallerErrors", "Engine", "Limits", "Models"], checkedSections.Order());
    }
}
