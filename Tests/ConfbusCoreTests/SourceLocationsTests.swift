import ConfbusCore
import Testing

struct SourceLocationsTests {
    @Test func storesReadsAndFindsTheNearestAncestor() throws {
        var locations = SourceLocations()
        let a = try #require(JSONPointer("/a"))
        let ab = try #require(JSONPointer("/a/b"))
        locations[a] = SourceLocation(file: "x.yaml", line: 3, column: 1)
        locations[ab] = SourceLocation(file: "x.yaml", line: 4, column: 70_000)
        #expect(locations[ab] == SourceLocation(file: "x.yaml", line: 4, column: 70_000))
        #expect(locations.nearest(to: try #require(JSONPointer("/a/b/c/0"))) == SourceLocation(file: "x.yaml", line: 4, column: 70_000))
        #expect(locations.nearest(to: try #require(JSONPointer("/a/z"))) == SourceLocation(file: "x.yaml", line: 3, column: 1))
        #expect(locations.nearest(to: try #require(JSONPointer("/q"))) == nil)
        // Another file is kept as it is; removing works for both kinds.
        let q = try #require(JSONPointer("/q"))
        locations[q] = SourceLocation(file: "y.yaml", line: 9, column: 2)
        #expect(locations[q] == SourceLocation(file: "y.yaml", line: 9, column: 2))
        #expect(locations.count == 3)
        locations[q] = nil
        locations[a] = nil
        #expect(locations[q] == nil && locations[a] == nil && locations.count == 1)
        // A pointer whose token holds "/" or "~" is its own key, not its parent's.
        let tricky = try #require(JSONPointer("/a~1b"))
        locations[tricky] = SourceLocation(file: "x.yaml", line: 7, column: 7)
        #expect(locations[ab] == SourceLocation(file: "x.yaml", line: 4, column: 70_000))
        #expect(locations[tricky]?.line == 7)
    }
}
