//! `callbridge doctor`: prints [`crate::doctor`]'s table; exits non-zero when a check fails.

use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let findings = crate::doctor::examine(&config).await;
    print!("{}", crate::doctor::table(&findings));
    let failed = findings.iter().filter(|f| f.verdict == crate::doctor::Verdict::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}
