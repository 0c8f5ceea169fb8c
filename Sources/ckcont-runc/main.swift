// ckcont-runc: an OCI runtime for podman, CRI-O and scripts that checkpoints and restores
// with ckcont. Every command but `checkpoint` and `restore` goes to the real runtime (runc)
// unchanged; those two take runc's flags and call ckcont beside this program, keeping runc's
// state of the container (`/run/runc/<id>/state.json`) so that runc knows it after a restore.
import Foundation
import Glibc

let arguments = RuncArguments(Array(CommandLine.arguments.dropFirst()))
do {
  switch arguments.command {
  case "checkpoint": exit(try CheckpointCommand(arguments).run())
  case "restore": exit(try RestoreCommand(arguments).run())
  default: try Runtime.execRunc(arguments.all)
  }
} catch let error as FrontError {
  arguments.report(error)
  exit(error.status)
} catch {
  arguments.report(FrontError("\(error)"))
  exit(1)
}
