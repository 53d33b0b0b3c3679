from django.db import migrations


def create_counter(apps, schema_editor):
    apps.get_model("viruses", "ChangeCounter").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("viruses", "0001_initial")]

    operations = [migrations.RunPython(create_counter, migrations.RunPython.noop)]
