"""Protocol buffer definitions the gateway speaks, loaded without their heavy packages."""
