# Issue 17.4: a local database name MySQL would need quoted is refused at evaluation.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    database.createLocally = true;
    database.name = "dsf-prod";
  };
}
