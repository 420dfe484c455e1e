# What every check file here reports: results { name; ok; got; want; }, one line each ("ok   ..."
# or "FAIL ..." with what was got and wanted), then its notes, "N/M checks passed" among them.
{ lib }:

rec {
  eq = name: got: want: {
    inherit name got want;
    ok = got == want;
  };
  check = name: ok: {
    inherit name ok;
    got = ok;
    want = true;
  };

  failures = lib.filter (r: !r.ok);
  passed =
    results:
    "${toString (lib.length results - lib.length (failures results))}/${toString (lib.length results)} checks passed";

  show = v: if builtins.isString v then v else builtins.toJSON v;
  line =
    r: if r.ok then "ok   ${r.name}" else "FAIL ${r.name}\n       got:  ${show r.got}\n       want: ${show r.want}";
  report = results: notes: lib.concatStringsSep "\n" (map line results ++ notes) + "\n";
}
